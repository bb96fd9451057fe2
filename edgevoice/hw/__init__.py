"""Hardware on GPIO: buttons and LEDs."""
