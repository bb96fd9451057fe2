"""Settings of the sound devices (the `[audio]` section of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class AudioSettings:
    """Devices are chosen by index or by a case-insensitive part of their name (see `edgevoice devices`)."""

    input_device: int | str = "default"
    output_device: int | str = "default"
    input_rate: int = field(default=0, metadata={"min": 0, "max": 192000, "doc": "0 = the device's default"})
    output_rate: int = field(default=0, metadata={"min": 0, "max": 192000, "doc": "0 = the device's default"})
    input_channels: int = field(default=0, metadata={"min": 0, "max": 32, "doc": "0 = mono if the device can"})
    input_channel: int = field(default=0, metadata={"min": 0, "max": 31, "doc": "the channel to use"})
    output_channels: int = field(default=0, metadata={"min": 0, "max": 32, "doc": "0 = mono if the device can"})
    frame_ms: Literal[10, 20, 40] = 20
    sample_format: Literal["auto", "int16", "int32"] = "auto"  # auto: 16-bit if the device takes it, else 32-bit
    echo: Literal["aec", "gate", "off"] = "aec"
    # The device cancels its own echo (a ReSpeaker Lite or USB Mic Array, a USB speakerphone): with echo = "aec"
    # edgevoice then runs no canceller of its own over the device's processed channel (see echo_hardware.py).
    hardware_aec: bool = False
    echo_tail_ms: int = field(default=128, metadata={"min": 32, "max": 512, "doc": "length of the echo modelled"})
    gate_hang_ms: int = field(default=200, metadata={"min": 0, "max": 2000, "doc": "gate: closed this long after"})
    gate_attenuation_db: float = field(default=40.0, metadata={"min": 0.0, "max": 100.0})


@dataclass(frozen=True)
class MixerSettings:
    """`[mixer]`: ALSA mixer controls set when edgevoice starts (`amixer -c CARD cset name=... VALUE`), for
    sound cards that come up muted or unrouted (a WM8960's output mixer, a codec's microphone input)."""

    card: str = ""  # the ALSA card: its id (the name in brackets in /proc/asound/cards) or its number
    # control name (as `amixer -c CARD controls` lists it) = value: "on", "off", a number, or a list per channel
    controls: dict[str, Any] = field(default_factory=dict)
