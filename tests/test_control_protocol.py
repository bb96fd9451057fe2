"""The control protocol's pure parts (line splitting, requests, pictures, outbox, rate limit), its
settings in config.toml, and the socket file (mode, group, stale and live sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgevoice.config import ConfigError, parse_config
from edgevoice.control import errors
from edgevoice.control import protocol as p
from edgevoice.control.commands import (
    COMMANDS,
    Listen,
    Say,
    Status,
    Subscribe,
    ToolResult,
    ToolSpec,
    ToolsRegister,
    Volume,
    parse_command,
)
from edgevoice.control.images import MAX_IMAGE, Image, ImageAssembler, ImageError, check, read_image_file, sniff
from edgevoice.control.outbox import REPLY_LIMIT, Outbox, RateLimiter
from edgevoice.control.settings import ControlSettings
from edgevoice.control.socketfile import SocketFileError, bind_control_socket, resolve_group

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
WEBP = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 100
DOC = Path(__file__).parent.parent / "docs" / "control-protocol.md"


@pytest.fixture
def sockdir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="ev-ctl-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# ---- lines --------------------------------------------------------------------------------------------------


def test_lines_are_split_across_reads_and_over_long_ones_reported_once() -> None:
    splitter = p.LineSplitter(max_line=10)
    assert splitter.feed(b'{"a"') == []
    assert splitter.feed(b":1}\n{}\n\n{") == [b'{"a":1}', b"{}", b""]
    assert splitter.feed(b"x" * 20) == [None]  # past the limit before its newline: reported at once
    assert splitter.feed(b"y" * 20) == []  # still the same line: not reported again
    assert splitter.feed(b'z\n{"b":2}\n') == [b'{"b":2}']
    assert splitter.feed(b"0123456789\n01234567890\n0123456789\r\n") == [b"0123456789", None, b"0123456789\r"]
    assert splitter.pending == 0


def test_encode_is_compact_utf8_and_refuses_nan() -> None:
    assert p.encode({"text": "grüß", "n": 1}) == '{"text":"grüß","n":1}\n'.encode()
    assert p.encode({"text": "\ud800"}) == b'{"text":"?"}\n'  # a lone surrogate cannot go out as UTF-8
    with pytest.raises(ValueError):
        p.encode({"level": float("nan")})


def test_requests_are_validated_into_their_typed_commands() -> None:
    assert p.parse_line(b'{"cmd": "status"}') == p.Request(None, Status())
    assert p.parse_line(b'{"id": "a", "cmd": "volume", "level": 1}') == p.Request("a", Volume(1.0))
    assert p.parse_line(b'{"id": 2, "cmd": "say", "text": "hi"}') == p.Request(2, Say("hi"))
    register = p.parse_line(b'{"id": 1, "cmd": "tools.register", "tools": [{"name": "move-2_x"}]}').command
    assert register == ToolsRegister((ToolSpec("move-2_x", "", {"type": "object", "properties": {}}, 10.0),))
    result = p.parse_line(b'{"cmd": "tool.result", "call_id": "call_1", "output": {"ok": [1, null]}}').command
    assert result == ToolResult("call_1", '{"ok": [1, null]}')
    assert p.parse_line(b'{"cmd": "tool.result", "call_id": "c", "output": null}').command == ToolResult("c", "null")
    subscribe = p.parse_line(b'{"cmd": "subscribe", "events": ["state", "state", "level"]}').command
    assert subscribe == Subscribe(("state", "level"))
    image = p.parse_line(b'{"cmd": "image", "data": "iVBORw0KGgo=", "more": true}').command
    assert image == Image(b"\x89PNG\r\n\x1a\n", None, None, None, True)


def test_a_plain_json_object_goes_through_the_same_validation_as_a_line() -> None:
    """What a bridge (e.g. MQTT `<base>/cmd/<name>` with a JSON payload) does: the same table, the same words."""
    assert parse_command("say", {"text": "hi"}, "m1") == Say("hi")
    assert parse_command("listen", {}) == Listen()
    assert parse_command("volume", {}) == Volume(None)
    cases = [
        ("say", {"txt": "hi"}, 'say: needs "text" (you sent "txt")'),
        ("volume", {"level": 1.5}, "volume: level = 1.5: must be between 0 and 1"),
        ("status", {"verbose": True}, "status: unknown field 'verbose'; allowed: no other fields"),
        ("image", {"data": "AAAA", "mime": "image/webp"}, "image: mime 'image/webp' is not supported"),
    ]
    for name, payload, words in cases:
        with pytest.raises(errors.RequestError) as direct:
            parse_command(name, payload, 9)
        with pytest.raises(errors.RequestError) as from_a_line:
            p.parse_line(json.dumps({"id": 9, "cmd": name, **payload}).encode())
        assert direct.value.message.startswith(words), direct.value.message
        assert (direct.value.code, direct.value.message, direct.value.request_id) == (
            from_a_line.value.code,
            from_a_line.value.message,
            from_a_line.value.request_id,
        )
    with pytest.raises(errors.RequestError) as unknown:
        parse_command("lisen", {}, 3)
    assert unknown.value.code == errors.UNKNOWN_COMMAND and "did you mean 'listen'" in unknown.value.message
    assert unknown.value.request_id == 3
    with pytest.raises(errors.RequestError, match="say: the arguments are a JSON object, not an array"):
        parse_command("say", ["hi"], 4)  # type: ignore[arg-type]


def test_the_table_names_each_command_once_with_a_summary_and_who_runs_it() -> None:
    assert list(COMMANDS) == [
        "hello", "status", "listen", "stop", "cancel", "end", "say", "speak", "image", "tools.register",
        "tools.unregister", "tool.result", "subscribe", "unsubscribe", "mute", "unmute", "volume",
    ]  # fmt: skip
    for name, spec in COMMANDS.items():
        assert spec.name == name and spec.summary and spec.arguments.__doc__
    device = {name for name, spec in COMMANDS.items() if spec.handled_by == "device"}
    assert device == {"listen", "stop", "cancel", "end", "say", "speak", "mute", "unmute", "volume"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        Say("hi").text = "bye"  # type: ignore[misc]


def doc_table(heading: str, first_column: str) -> list[list[str]]:
    """The backquoted names in the first column of the table headed `| first_column |` under `## heading` of
    control-protocol.md (a section may hold other tables)."""
    section = DOC.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    table = section.split(f"\n| {first_column} |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([^`]+)`", row) for row in rows]


def test_the_docs_list_every_command_and_every_error_code() -> None:
    documented = [name for row in doc_table("Commands", "command") for name in row]
    assert sorted(documented) == sorted(COMMANDS)  # each once (the docs group them by topic)
    assert [code for row in doc_table("Errors", "code") for code in row] == list(errors.ERROR_CODES)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b'{"cmd": "tools.register", "tools": [{"name": "a"}, {"name": "a"}]}', "listed twice"),
        (b'{"cmd": "tools.register", "tools": [' + b'{"name": "t"},' * 64 + b'{"name": "u"}]}', "the limit is 64"),
        (b'{"cmd": "tools.register", "tools": ["move"]}', "tools[0] must be an object"),
        (b'{"cmd": "tools.register", "tools": [{"name": "' + b"n" * 65 + b'"}]}', "1-64 letters"),
        (b'{"cmd": "tools.unregister", "names": ["ok", "not ok"]}', "'not ok' is not allowed"),
        (b'{"cmd": "tool.result", "call_id": "has space", "output": ""}', "not one the device sent"),
        (b'{"cmd": "image", "path": "/x", "more": true}', '"more"'),
        (b'{"cmd": "say", "text": "hi", "txet": "x"}', "unknown field 'txet'"),
        (b'{"cmd": "image", "data": "\\u0080"}', "not valid base64"),  # found by the fuzzer: no reply at all
        (b'{"cmd": "image", "path": "/tmp/\\u0000x"}', "NUL character"),
    ],
)
def test_bad_arguments_are_named(line: bytes, words: str) -> None:
    with pytest.raises(errors.RequestError) as refused:
        p.parse_line(line)
    assert refused.value.code == errors.BAD_REQUEST and words in refused.value.message


# ---- pictures -----------------------------------------------------------------------------------------------


def test_pictures_are_recognised_by_their_first_bytes() -> None:
    assert sniff(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff(PNG) == "image/png"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"GIF89a") is None and sniff(b"") is None


def test_only_what_the_model_takes_is_accepted_and_webp_is_refused_by_name() -> None:
    assert check(PNG, None, "what?").mime == "image/png"
    for mime in (None, "image/png"):
        with pytest.raises(ImageError, match="the picture is WebP, which the model does not take: convert it to JPEG"):
            check(WEBP, mime, None)
    with pytest.raises(ImageError, match="not a JPEG or PNG picture"):
        check(b"GIF89a" + b"\0" * 100, None, None)


def test_chunks_are_assembled_and_bounded() -> None:
    assembler = ImageAssembler()
    assert assembler.add(PNG[:5], None, "look", more=True) is None
    image = assembler.add(PNG[5:], "image/png", None, more=False)
    assert image is not None and (image.data, image.mime, image.prompt) == (PNG, "image/png", "look")
    assert assembler.pending == 0
    assembler.add(b"\xff" * (MAX_IMAGE - 10), None, None, more=True)
    with pytest.raises(ImageError, match="over the 4194304 byte limit"):
        assembler.add(b"\xff" * 20, None, None, more=True)
    assert assembler.pending == 0  # dropped: the next picture starts clean


def test_a_file_is_read_only_for_a_client_that_could_read_it(sockdir: str) -> None:
    path = os.path.join(sockdir, "frame.png")
    with open(path, "wb") as f:
        f.write(PNG)
    os.chmod(path, 0o600)
    os.chown(path, 1234, 1234) if os.geteuid() == 0 else None
    owner = os.stat(path).st_uid
    assert read_image_file(path, owner, None, None).data == PNG
    if os.geteuid() == 0:
        with pytest.raises(ImageError, match="belonging to your user") as not_yours:
            read_image_file(path, 4321, None, None)
        with pytest.raises(ImageError) as missing:
            read_image_file(path + ".missing", 4321, None, None)
        # The same answer whether the file is not theirs or does not exist: the socket tells nobody what exists.
        assert str(missing.value).replace(".missing", "") == str(not_yours.value)
        os.chmod(path, 0o644)
        assert read_image_file(path, 4321, None, None).mime == "image/png"  # everyone may read it anyway
    with pytest.raises(ImageError, match=r"not a regular file|not usable"):
        read_image_file(sockdir, owner, None, None)
    fifo = os.path.join(sockdir, "fifo")
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"not a regular file|not usable"):  # never blocks on a pipe with no writer
        read_image_file(fifo, owner, None, None)


# ---- outbox and rate limit ---------------------------------------------------------------------------------


def test_the_outbox_drops_oldest_events_never_replies_and_says_how_many() -> None:
    async def main() -> None:
        box = Outbox(event_limit=3)
        for i in range(5):
            box.put_event(b"e%d\n" % i)
        box.put_reply(b"r\n")
        assert await box.next_batch() == b'r\n{"event":"dropped","count":2}\ne2\ne3\ne4\n'
        for _ in range(REPLY_LIMIT):
            box.put_reply(b"r\n")
        waiting = asyncio.create_task(box.wait_room())
        await asyncio.sleep(0)
        assert not waiting.done()  # too many unread replies: the client's next request waits
        await box.next_batch()
        await asyncio.sleep(0)
        assert waiting.done()
        box.put_event(b"late\n")
        box.put_reply(b"bye\n")
        box.close()
        assert await box.next_batch() == b"bye\n"  # events pending at close are not sent
        assert await box.next_batch() == b""

    asyncio.run(main())


def test_the_rate_limiter_allows_bursts_then_the_rate_and_spots_floods() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=5, flood_limit=20, clock=lambda: now[0])
    assert [limiter.allow() for _ in range(7)] == [True] * 5 + [False] * 2
    now[0] += 0.1
    assert limiter.allow() and not limiter.allow()
    assert not limiter.flooding
    for _ in range(20):
        limiter.allow()
    assert limiter.flooding and limiter.refused_total == 23
    now[0] += 11  # a new window, with a full bucket again
    assert [limiter.allow() for _ in range(6)] == [True] * 5 + [False]
    assert not limiter.flooding


# ---- settings -----------------------------------------------------------------------------------------------


def test_control_settings_in_config_toml() -> None:
    config = parse_config('[control]\nsocket = "/run/x/c.sock"\nmode = 0o640\nallowed_uids = [1000, 1001]')
    assert config.control == ControlSettings(socket="/run/x/c.sock", mode=0o640, allowed_uids=(1000, 1001))
    assert parse_config("").control.mode == 0o660
    with pytest.raises(ConfigError, match=r"\[control\] mode = 0o777: must be between 0o600 and 0o666"):
        parse_config("[control]\nmode = 0o777")
    with pytest.raises(ConfigError, match="allowed_uids"):
        parse_config('[control]\nallowed_uids = ["root"]')


# ---- the socket file ----------------------------------------------------------------------------------------


def other_group() -> tuple[str, int]:
    for name in ("nogroup", "daemon", "users"):
        try:
            return name, grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    pytest.skip("no spare group on this machine")


def test_the_socket_gets_its_mode_and_group_and_nothing_else_is_left(sockdir: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another group needs root (or membership)")
    name, gid = other_group()
    path = os.path.join(sockdir, "control.sock")
    sock, warnings = bind_control_socket(path, 0o660, resolve_group(name))
    try:
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == gid
        assert os.listdir(sockdir) == ["control.sock"]  # the private directory it was made in is gone
        assert any(f"members of group {gid} cannot reach" in w for w in warnings)  # sockdir is 0700 root
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.close()
    finally:
        sock.close()


def test_a_stale_socket_is_replaced_and_a_live_one_is_left_alone(sockdir: str) -> None:
    path = os.path.join(sockdir, "control.sock")
    first, _ = bind_control_socket(path, 0o660, None)
    with pytest.raises(SocketFileError, match=rf"in use by another running program \(pid {os.getpid()} "):
        bind_control_socket(path, 0o660, None)
    first.close()  # the process died without removing its socket
    second, _ = bind_control_socket(path, 0o600, None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second.close()


def test_socket_file_problems_say_what_to_do(sockdir: str) -> None:
    regular = os.path.join(sockdir, "control.sock")
    open(regular, "w").close()
    with pytest.raises(SocketFileError, match="exists and is not a socket"):
        bind_control_socket(regular, 0o660, None)
    with pytest.raises(SocketFileError, match="limited to 107 bytes"):
        bind_control_socket("/tmp/" + "x" * 120, 0o660, None)
    with pytest.raises(SocketFileError, match="use an absolute path"):
        bind_control_socket("control.sock", 0o660, None)
    with pytest.raises(SocketFileError, match=r"no such group; create it \(sudo groupadd --system robots-x"):
        resolve_group("robots-x")
    assert resolve_group("") is None and resolve_group("1234") == 1234
    nested = os.path.join(sockdir, "run", "edgevoice.sock")
    made, _ = bind_control_socket(nested, 0o660, None)  # the socket's own directory is made (0750)
    assert stat.S_IMODE(os.stat(os.path.dirname(nested)).st_mode) == 0o750
    made.close()
    with pytest.raises(SocketFileError, match="does not exist"):
        bind_control_socket(os.path.join(sockdir, "a", "b", "c.sock"), 0o660, None)


def test_values_json_cannot_carry_are_refused() -> None:
    for line in (
        b'{"cmd": "tool.result", "call_id": "c", "output": {"x": 1e400}}',
        b'{"cmd": "tool.result", "call_id": "c", "output": "\\udc00"}',
        b'{"cmd": "tools.register", "tools": [{"name": "t", "parameters": {"type": "object", "maximum": 1e999}}]}',
    ):
        with pytest.raises(errors.RequestError, match="too large for JSON or a lone surrogate"):
            p.parse_line(line)
    with pytest.raises(errors.RequestError, match=r"level = inf: must be between 0 and 1"):
        p.parse_line(b'{"cmd": "volume", "level": 1e400}')
    assert p.request_id_of(b'{"id": "\\ud800", "cmd": "status"}') is None  # it could not go back as it came
    assert p.request_id_of(b'{"id": 5, "cmd": "status", "level": NaN}') is None
    assert p.request_id_of(b'{"id": 5, "cmd": "anything"}') == 5


def test_no_chown_when_the_socket_already_has_its_group(sockdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """edgevoice.service forbids chown (SystemCallFilter=~@privileged); there Group= gives the group already."""

    def forbidden(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", forbidden)
    path = os.path.join(sockdir, "control.sock")
    sock, _ = bind_control_socket(path, 0o660, os.getegid())
    sock.close()
    with pytest.raises(SocketFileError, match="its service forbids chown"):
        bind_control_socket(os.path.join(sockdir, "other.sock"), 0o660, os.getegid() + 1)
