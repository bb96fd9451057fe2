"""edgevoice: a voice terminal for the OpenAI Realtime API on Raspberry Pi-class hardware."""

__version__ = "0.1.0"
