"""The fleet: an optional bridge to the operator's MQTT broker (availability, state, events, metrics, commands,
Home Assistant discovery), the Prometheus textfile, and `edgevoice fleet`, the operator's table of devices.

A leaf package: it knows nothing of audio, realtime, hw, control or system. The daemon (device_fleet.py) hands
it callables: how to run a command through the control package's one command table, and what the device's
status is. The MQTT and Prometheus libraries are imported only when `[mqtt]` or `[metrics]` is configured.
"""
