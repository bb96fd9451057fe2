"""The local control socket: robot controllers and other programs drive the device over JSON Lines."""
