"""A board's ALSA mixer settings: validated with the configuration, applied with `amixer` at start, and a
failure is a warning that says what to check, never an exception. The `amixer` here is a stand-in program
on PATH that records its arguments (the machine has no sound card whose controls could be set)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from edgevoice.audio.mixer import apply_mixer, control_value
from edgevoice.audio.settings import MixerSettings
from edgevoice.config import ConfigError, parse_config

FAKE_AMIXER = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
case "$*" in
  *Broken*) echo "amixer: Cannot find the given element from control hw:wm8960soundcard" >&2; exit 1 ;;
esac
exit 0
"""


def fake_amixer(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "amixer.log"
    program = tmp_path / "bin" / "amixer"
    program.parent.mkdir()
    program.write_text(FAKE_AMIXER.format(log=log))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program, log


def test_every_control_is_set_with_amixer_cset(tmp_path: Path) -> None:
    program, log = fake_amixer(tmp_path)
    settings = MixerSettings(
        card="wm8960soundcard",
        controls={
            "Left Output Mixer PCM Playback Switch": True,
            "Headphone Playback Volume": [109, 109],
            "Capture Switch": [True, False],
            "ADC Data Output Select": "Left Data = Left ADC;  Right Data = Right ADC",
            "Speaker DC Volume": 4,
        },
    )
    report = apply_mixer(settings, amixer=str(program))
    assert report.failed == [] and len(report.applied) == 5
    assert log.read_text().splitlines() == [
        "-q -c wm8960soundcard cset name='Left Output Mixer PCM Playback Switch' on",
        "-q -c wm8960soundcard cset name='Headphone Playback Volume' 109,109",
        "-q -c wm8960soundcard cset name='Capture Switch' on,off",
        "-q -c wm8960soundcard cset name='ADC Data Output Select' Left Data = Left ADC;  Right Data = Right ADC",
        "-q -c wm8960soundcard cset name='Speaker DC Volume' 4",
    ]


def test_a_failing_control_is_a_warning_and_the_others_are_still_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    program, log = fake_amixer(tmp_path)
    settings = MixerSettings(card="wm8960soundcard", controls={"Broken Switch": True, "Playback Volume": 255})
    with caplog.at_level(logging.WARNING, logger="edgevoice.audio.mixer"):
        report = apply_mixer(settings, amixer=str(program))
    assert report.applied == ["Playback Volume"] and len(log.read_text().splitlines()) == 2
    assert report.failed == [
        "Broken Switch = on: amixer: Cannot find the given element from control hw:wm8960soundcard"
    ]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 of 2 control(s) not set" in warning and "amixer -c wm8960soundcard controls" in warning


def test_no_amixer_is_a_warning_not_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgevoice.audio.mixer"):
        report = apply_mixer(MixerSettings(card="Zero", controls={"Lineout Switch": True}), amixer=str(tmp_path / "x"))
    assert report.applied == [] and "is not installed (apt install alsa-utils)" in report.failed[0]
    assert "is not installed" in caplog.text


def test_the_real_amixer_reports_a_missing_card(tmp_path: Path) -> None:
    # alsa-utils' own amixer, on a machine where the card does not exist: a failure reported, nothing raised.
    if not any(Path(d, "amixer").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("alsa-utils is not installed")
    report = apply_mixer(MixerSettings(card="nosuchcard", controls={"Playback Volume": 10}))
    assert report.applied == [] and report.failed and report.failed[0].startswith("Playback Volume = 10: ")


@pytest.mark.parametrize(
    ("value", "text"), [(True, "on"), (False, "off"), (80, "80"), ([1, 2], "1,2"), ("80%", "80%"), ({}, None)]
)
def test_control_values(value: object, text: str | None) -> None:
    assert control_value(value) == text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[mixer.controls]\n"Capture Switch" = true\n', r"\[mixer\] controls need \[mixer\] card"),
        (
            '[mixer]\ncard = "Zero"\n[mixer.controls]\n"ADC Volume" = 1.5\n',
            r"\[mixer.controls\] 'ADC Volume' = 1.5: use true/false",
        ),
        ('[mixer]\ncard = "Zero"\nvolume = 3\n', r"unknown key \[mixer\] volume"),
    ],
)
def test_a_bad_mixer_section_is_a_configuration_error(body: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=r"config.toml: " + expected):
        parse_config(body, "config.toml")


def test_config_adds_to_and_overrides_the_profiles_mixer() -> None:
    config = parse_config(
        '[hardware]\nprofile = "waveshare-wm8960"\n[mixer.controls]\n"Speaker Playback Volume" = [90, 90]\n'
        '"Headphone Playback Switch" = false\n',
        "config.toml",
    )
    controls = config.mixer.controls
    assert config.mixer.card == "wm8960soundcard" and controls["Speaker Playback Volume"] == [90, 90]
    assert controls["Headphone Playback Switch"] is False and controls["Left Boost Mixer LINPUT1 Switch"] is True
