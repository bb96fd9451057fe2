"""`edgevoice profiles detect` from sysfs and procfs trees the tests build: sound cards and card ids, USB ids,
I2C codecs; one clear answer, or the candidates, or none; and the doctor's board check on the same trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevoice.cli import main
from edgevoice.hw.detect import check_board, describe_detection, detect, read_machine
from edgevoice.hw.profiles import BUILTIN_DIR, list_profiles

PROFILES = list_profiles([BUILTIN_DIR])

# /proc/asound/cards lines as the drivers write them (see each profile's sources).
SEEED_2MIC = " 1 [seeed2micvoicec]: simple-card_cod - seeed2micvoicec\n                      seeed2micvoicec\n"
WAVESHARE = " 1 [wm8960soundcard]: simple-card_cod - wm8960-soundcard\n                      wm8960-soundcard\n"
CODEC_ZERO = " 1 [Zero           ]: RPi-Codec-Zero - RPi Codec Zero\n                      RPi Codec Zero\n"
USB_ARRAY = (
    " 1 [ArrayUAC10     ]: USB-Audio - ReSpeaker 4 Mic Array (UAC1.0)\n"
    "                      SEEED ReSpeaker 4 Mic Array (UAC1.0) at usb-0000:01:00.0-1.3, full speed\n"
)
LITE = (
    " 2 [Lite           ]: USB-Audio - ReSpeaker Lite\n                      Seeed ReSpeaker Lite at usb-xhci-hcd.0-1\n"
)
JABRA = " 2 [USB            ]: USB-Audio - Jabra SPEAK 510 USB\n                      Jabra SPEAK 510 USB at usb-1\n"
PNP = " 2 [Device         ]: USB-Audio - USB PnP Sound Device\n                      C-Media USB PnP Sound Device\n"


def machine_tree(
    root: Path,
    *,
    cards: str = "",
    card_ids: tuple[str, ...] = (),
    usb: tuple[tuple[str, str, str], ...] = (),
    i2c: tuple[tuple[str, str, str], ...] = (),
    model: str = "Raspberry Pi 4 Model B Rev 1.4",
) -> tuple[Path, Path]:
    """A sysfs and a procfs tree under `root` as Linux lays them out; returns (sysfs, procfs)."""
    sysfs, procfs = root / "sys", root / "proc"
    (procfs / "asound").mkdir(parents=True)
    (procfs / "device-tree").mkdir()
    (procfs / "device-tree" / "model").write_text(model + "\x00")
    if cards:
        (procfs / "asound" / "cards").write_text(cards)
    for n, card_id in enumerate(card_ids):
        (procfs / "asound" / f"card{n}").mkdir()
        (procfs / "asound" / f"card{n}" / "id").write_text(card_id + "\n")
    usb_dir = sysfs / "bus" / "usb" / "devices"
    usb_dir.mkdir(parents=True)
    (usb_dir / "usb1").mkdir()  # the root hub: 1d6b:0002
    (usb_dir / "usb1" / "idVendor").write_text("1d6b\n")
    (usb_dir / "usb1" / "idProduct").write_text("0002\n")
    (usb_dir / "1-1.4:1.0").mkdir()  # an interface: no ids of its own
    for n, (vendor, product, name) in enumerate(usb):
        device = usb_dir / f"1-1.{n + 1}"
        device.mkdir()
        (device / "idVendor").write_text(vendor + "\n")
        (device / "idProduct").write_text(product + "\n")
        (device / "product").write_text(name + "\n")
    i2c_dir = sysfs / "bus" / "i2c" / "devices"
    i2c_dir.mkdir(parents=True)
    for address, name, compatible in i2c:
        device = i2c_dir / address
        (device / "of_node").mkdir(parents=True)
        (device / "name").write_text(name + "\n")
        (device / "of_node" / "compatible").write_bytes(compatible.encode() + b"\x00")
    return sysfs, procfs


def best(tmp_path: Path, **facts: object) -> list[str]:
    sysfs, procfs = machine_tree(tmp_path, **facts)  # type: ignore[arg-type]
    return sorted(m.profile.name for m in detect(PROFILES, read_machine(sysfs, procfs)).best)


WM8960 = ("1-001a", "wm8960", "wlf,wm8960")
TLV320 = ("1-0018", "tlv320aic3104", "ti,tlv320aic3104")
DA7213 = ("1-001a", "da7213", "dlg,da7213")
EEPROM = ("0-0050", "24c32", "atmel,24c32")  # something else on the bus


def test_the_codec_tells_the_respeaker_2mic_v2_from_v1(tmp_path: Path) -> None:
    # Both revisions call their card seeed2micvoicec; the codec on I2C is what differs.
    assert best(tmp_path / "v2", cards=SEEED_2MIC, i2c=(TLV320, EEPROM)) == ["respeaker-2mic-v2"]
    v1 = best(tmp_path / "v1", cards=SEEED_2MIC, i2c=(WM8960,))
    assert v1 == ["adafruit-voice-bonnet", "respeaker-2mic"]  # same codec, same driver: the candidates
    # Without a readable I2C bus the card name alone cannot tell the three apart: all are offered.
    assert best(tmp_path / "no-i2c", cards=SEEED_2MIC) == [
        "adafruit-voice-bonnet",
        "respeaker-2mic",
        "respeaker-2mic-v2",
    ]


def test_a_hat_without_eeprom_or_card_is_found_by_its_codec(tmp_path: Path) -> None:
    # The overlay declared the codec, but no sound card came up (the driver is missing): still one answer.
    assert best(tmp_path / "zero", i2c=(DA7213,)) == ["rpi-codec-zero"]
    assert best(tmp_path / "waveshare", cards=WAVESHARE, i2c=(WM8960,)) == ["waveshare-wm8960"]
    assert best(tmp_path / "zero-card", cards=CODEC_ZERO, i2c=(DA7213,)) == ["rpi-codec-zero"]


@pytest.mark.parametrize(
    ("cards", "usb", "expected"),
    [
        (USB_ARRAY, ("2886", "0018", "ReSpeaker 4 Mic Array (UAC1.0)"), "respeaker-usb-mic-array-v2"),
        (LITE, ("2886", "0019", "ReSpeaker Lite"), "respeaker-lite"),
        (JABRA, ("0B0E", "0422", "Jabra SPEAK 510 USB"), "usb-speakerphone"),  # sysfs ids in any case
        (PNP, ("0d8c", "0014", "USB PnP Sound Device"), "generic-usb"),
    ],
)
def test_usb_devices_by_their_vendor_and_product_id(
    tmp_path: Path, cards: str, usb: tuple[str, str, str], expected: str
) -> None:
    sysfs, procfs = machine_tree(tmp_path, cards=cards, usb=(usb,))
    detection = detect(PROFILES, read_machine(sysfs, procfs))
    assert [m.profile.name for m in detection.best] == [expected]
    fits = {m.profile.name for m in detection.fits}
    assert "generic-usb" in fits  # any USB card fits the generic profile; a specific one wins over it
    text = describe_detection(detection)
    assert f'[hardware] profile = "{expected}"' in text
    if expected != "generic-usb":
        assert f"USB id {usb[0].lower()}:{usb[1]} ({usb[2]})" in text


def test_the_usb_id_alone_is_enough(tmp_path: Path) -> None:
    # The card's name may differ (another firmware): the USB id still names the device.
    assert best(tmp_path, usb=(("2886", "0018", "ReSpeaker 4 Mic Array"),)) == ["respeaker-usb-mic-array-v2"]


def test_by_the_alsa_card_id(tmp_path: Path) -> None:
    # No /proc/asound/cards (a container, say) but /proc/asound/card1/id.
    assert best(tmp_path, card_ids=("Headphones", "ArrayUAC10")) == ["respeaker-usb-mic-array-v2"]


def test_nothing_known_says_so_and_the_command_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sysfs, procfs = machine_tree(tmp_path, usb=(("046d", "c52b", "Unifying Receiver"),), i2c=(EEPROM,))
    assert detect(PROFILES, read_machine(sysfs, procfs)).best == []
    code = main(["profiles", "detect", "--sysfs", str(sysfs), "--procfs", str(procfs)])
    out = capsys.readouterr().out
    assert code == 1 and "no profile matches this machine" in out


def test_the_command_reads_the_trees_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sysfs, procfs = machine_tree(tmp_path, cards=SEEED_2MIC, i2c=(TLV320,), model="Raspberry Pi 5 Model B Rev 1.0")
    code = main(["profiles", "detect", "--sysfs", str(sysfs), "--procfs", str(procfs)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "matches: respeaker-2mic-v2" in out and "I2C codec ti,tlv320aic3104 at 1-0018" in out
    assert "board: Raspberry Pi 5 Model B Rev 1.0" in out and "RPi.GPIO does not work there" in out


def test_doctor_checks_the_board_against_the_same_trees(tmp_path: Path) -> None:
    sysfs, procfs = machine_tree(tmp_path, cards=SEEED_2MIC, i2c=(TLV320,))
    cards, model = str(procfs / "asound" / "cards"), str(procfs / "device-tree" / "model")

    def check(name: str) -> str | None:
        return check_board(name, cards, model, sysfs_root=sysfs, procfs_root=procfs)

    assert check("respeaker-2mic-v2") is None
    problem = check("respeaker-2mic")  # the card is there, but its codec (a WM8960) is not
    assert problem is not None and "wlf,wm8960" in problem and "seeed2micvoicec" in problem
    assert check("generic-usb") is not None  # no USB sound card here
