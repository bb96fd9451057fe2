"""Tools for developing and testing edgevoice without hardware or an API key.

    emulator      a local server speaking the OpenAI Realtime API (GA, WebSocket): scripted answers,
                  injected faults (`edgevoice emulator`); a leaf that imports nothing else of edgevoice
    sound_card    a virtual sound card: a scripted microphone and a recording speaker through the real
                  PyAudio -> PortAudio -> ALSA path (the tests' and the demo's hardware)
    demo          `edgevoice demo`: the whole device against both, on any Linux machine
    rig           `edgevoice run` in a process of its own on the virtual card, optionally under a CPU quota that
                  emulates a Pi-class core (the slow-CPU tests and the benchmarks)

Nothing here is part of the device: `edgevoice run` never imports this package.
"""
