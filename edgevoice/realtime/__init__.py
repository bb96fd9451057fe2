"""The Realtime API: event builders and parsers, one session, the session manager and what it uses."""
