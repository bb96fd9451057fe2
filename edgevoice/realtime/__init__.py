"""The Realtime API: event builders and parsers, one session, the local emulator."""
