"""System integration: logging (journald) and service notification."""
