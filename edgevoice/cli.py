"""The `edgevoice` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from edgevoice import __version__

log = logging.getLogger("edgevoice")


def _cmd_run(args: argparse.Namespace) -> int:
    # What `run` loads lives as long as the process: the collector's passes over it while it loads find nothing
    # and cost a Pi's start-up (run_service turns collection back on once the configuration is loaded).
    gc.disable()
    from edgevoice.service import run_service

    return run_service(args.config)


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgevoice.devkit.demo import DEFAULT_PHRASE, run_demo

    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s: %(message)s")
    return run_demo(Path(args.out), vad=args.vad, phrase=args.say or DEFAULT_PHRASE)


def _cmd_devices(args: argparse.Namespace) -> int:
    from edgevoice.audio.devices import describe_devices, list_devices, open_portaudio

    pa = open_portaudio()
    try:
        devices = list_devices(pa)
    finally:
        pa.terminate()
    if args.json:
        print(json.dumps([asdict(d) for d in devices], indent=2))
    else:
        print(describe_devices(devices))
        print("\nChoose with [audio] input_device / output_device = an index or a part of a name.")
    return 0


def _cmd_emulator(args: argparse.Namespace) -> int:
    from edgevoice.devkit.emulator import EmulatorSettings, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = EmulatorSettings(host=args.host, port=args.port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edgevoice.doctor import run_doctor

    logging.basicConfig(level=logging.ERROR, format="  %(levelname)s %(name)s: %(message)s")
    return run_doctor(args.config, as_json=args.json)


def _cmd_selftest(args: argparse.Namespace) -> int:
    from edgevoice.selftest import run_selftest

    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s: %(message)s")
    return run_selftest(args.config, plot=args.plot, button_timeout_s=args.button_timeout, state_dir=args.state_dir)


def _cmd_profiles(args: argparse.Namespace) -> int:
    from edgevoice.hw import profiles as hwp

    if args.action == "list":
        found = hwp.list_profiles()
        width = max((len(p.name) for p in found), default=0)
        for profile in found:
            print(f"{profile.name:<{width}}  {profile.title}")
        print(
            '\nUse one with  [hardware] profile = "NAME"  in config.toml; `edgevoice profiles show NAME` for details.'
        )
        return 0
    if args.action == "show":
        if not args.name:
            print("edgevoice: profiles show needs a NAME (see `edgevoice profiles list`)", file=sys.stderr)
            return 2
        try:
            print(hwp.describe_profile(hwp.load_profile(args.name)))
        except hwp.ProfileError as exc:
            print(f"edgevoice: {exc}", file=sys.stderr)
            return 2
        return 0
    from edgevoice.hw import detect as hwd

    machine = hwd.read_machine(
        Path(args.sysfs),
        Path(args.procfs),
        cards_path=Path(args.cards) if args.cards else None,
        model_path=Path(args.model) if args.model else None,
    )
    detection = hwd.detect(hwp.list_profiles(), machine)
    print(hwd.describe_detection(detection))
    return 0 if detection.best else 1


def _cmd_ctl(args: argparse.Namespace) -> int:
    from edgevoice.control.ctl import run_ctl

    return run_ctl(args, control_socket(args.socket, args.config))


def _cmd_fleet(args: argparse.Namespace) -> int:
    from edgevoice.config import ConfigError, load_config
    from edgevoice.fleet.credentials import BrokerCredentialsError, load_password

    try:
        mqtt = load_config(args.config).mqtt
    except ConfigError as exc:
        if not args.broker:
            print(f"edgevoice fleet: {exc}", file=sys.stderr)
            return 2
        from edgevoice.fleet.settings import MqttSettings

        mqtt = MqttSettings()
    url = args.broker or mqtt.url
    if not url:
        print("edgevoice fleet: no broker: give --broker mqtt://HOST or set [mqtt] url in config.toml", file=sys.stderr)
        return 2
    try:
        password = load_password(args.password_file if args.password_file is not None else mqtt.password_file)
    except BrokerCredentialsError as exc:
        print(f"edgevoice fleet: {exc}", file=sys.stderr)
        return 2
    try:
        from edgevoice.fleet.fleet_cli import run_fleet
    except ImportError:
        print("edgevoice fleet: needs the mqtt extra: pip install 'edgevoice[mqtt]'", file=sys.stderr)
        return 2
    return run_fleet(
        url,
        args.prefix,
        username=args.username if args.username is not None else (mqtt.username or None),
        password=password.value if password is not None else None,
        ca_file=args.ca_file if args.ca_file is not None else mqtt.ca_file,
        wait_s=args.wait,
        as_json=args.json,
    )


def control_socket(cli_path: str | None, config_path: str | None) -> str:
    """--socket, else $EDGEVOICE_SOCKET, else [control] socket of the configuration (if it can be read)."""

    from edgevoice.config import ConfigError, load_config

    if cli_path or os.environ.get("EDGEVOICE_SOCKET"):
        return cli_path or os.environ["EDGEVOICE_SOCKET"]
    try:
        return load_config(config_path).control.socket
    except ConfigError as exc:
        from edgevoice.control.settings import DEFAULT_SOCKET

        print(f"edgevoice ctl: {exc}; trying {DEFAULT_SOCKET}", file=sys.stderr)
        return DEFAULT_SOCKET


def build_parser(*, ctl_commands: bool = True) -> argparse.ArgumentParser:
    """The command line. `ctl_commands`: give `ctl` its subcommands, one per row of the control command table
    (loading the table and building them costs a Pi's start-up a good part of a second: only `ctl` needs it)."""
    parser = argparse.ArgumentParser(prog="edgevoice", description="A voice terminal for the OpenAI Realtime API.")
    parser.add_argument("--version", action="version", version=f"edgevoice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (what systemd starts)")
    run.add_argument("--config", help="config file (default: $EDGEVOICE_CONFIG or /etc/edgevoice/config.toml)")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="the whole pipeline with simulated hardware and the built-in emulator")
    demo.add_argument("--out", default="edgevoice-demo.wav", help="where to write the recorded speaker (WAV)")
    demo.add_argument("--vad", action="store_true", help="let server VAD end the turn instead of push-to-talk")
    demo.add_argument("--say", help="what the simulated visitor says")
    demo.set_defaults(func=_cmd_demo)

    devices = sub.add_parser("devices", help="list audio inputs and outputs")
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    devices.set_defaults(func=_cmd_devices)

    doctor = sub.add_parser("doctor", help="check this device: config, sound, GPIO, network, API key, clock, disk")
    doctor.add_argument("--config", help="config file (default: as for run)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=_cmd_doctor)

    selftest = sub.add_parser(
        "selftest", help="measure the speaker-to-microphone echo path, walk the LED, test the button"
    )
    selftest.add_argument("--config", help="config file (default: as for run)")
    selftest.add_argument("--plot", help="also write a PNG of the recorded chirp and the impulse response here")
    selftest.add_argument("--button-timeout", type=float, default=10.0, help="seconds to wait for a press (0: skip)")
    selftest.add_argument(
        "--state-dir", help="where to save the echo path (default: $STATE_DIRECTORY or /var/lib/edgevoice)"
    )
    selftest.set_defaults(func=_cmd_selftest)

    profiles = sub.add_parser("profiles", help="hardware profiles: list, show NAME, detect this board")
    profiles.add_argument("action", choices=("list", "show", "detect"))
    profiles.add_argument("name", nargs="?", help="the profile to show")
    profiles.add_argument("--sysfs", default="/sys", help="where sysfs is (USB and I2C devices)")
    profiles.add_argument("--procfs", default="/proc", help="where procfs is (sound cards, board model)")
    profiles.add_argument("--cards", help="the sound card list to detect from (default: PROCFS/asound/cards)")
    profiles.add_argument("--model", help="the board model to detect from (default: PROCFS/device-tree/model)")
    profiles.set_defaults(func=_cmd_profiles)

    ctl = sub.add_parser("ctl", help="drive a running edgevoice through its control socket (ctl status, ctl say ...)")
    ctl.add_argument("--socket", help="the control socket (default: $EDGEVOICE_SOCKET or [control] socket)")
    ctl.add_argument("--config", help="config file to read [control] socket from (default: as for run)")
    if ctl_commands:
        from edgevoice.control.ctl import add_arguments as add_ctl_arguments

        add_ctl_arguments(ctl)
    ctl.set_defaults(func=_cmd_ctl)

    fleet = sub.add_parser("fleet", help="every device on an MQTT broker: state, link, latency, cost, last seen")
    fleet.add_argument("--broker", help="mqtt://HOST[:PORT], mqtts://... or unix:///PATH (default: [mqtt] url)")
    fleet.add_argument("--prefix", default="edgevoice", help="where the devices' topics are (default: edgevoice)")
    fleet.add_argument("--username", help="broker user (default: [mqtt] username)")
    fleet.add_argument("--password-file", help="a file holding the broker password (default: [mqtt] password_file)")
    fleet.add_argument("--ca-file", help="for mqtts://: the broker's CA (default: [mqtt] ca_file)")
    fleet.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the broker at most")
    fleet.add_argument("--config", help="config file to read [mqtt] from (default: as for run)")
    fleet.add_argument("--json", action="store_true", help="machine-readable output")
    fleet.set_defaults(func=_cmd_fleet)

    emulator = sub.add_parser("emulator", help="run the local Realtime-protocol server for development")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.set_defaults(func=_cmd_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    # numpy's OpenBLAS starts a thread per core at import; the device's matrices are small, one thread is faster
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    words = sys.argv[1:] if argv is None else argv
    command = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(ctl_commands=command == "ctl").parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
