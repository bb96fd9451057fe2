"""Hardware on GPIO: buttons and their gestures, status LEDs and their looks, boards' hardware profiles."""
