"""Pictures from controllers: the `image` command, checked by their first bytes, bounded in size, inline, in
chunks or from a file, and given to the device as a `Picture`.

The Realtime API's `input_image` takes JPEG and PNG only, so those are the only pictures accepted; a WebP
picture is recognised so that the refusal can say what it is and what to do (convert it).

A JPEG from a robot's camera is often larger than the 64 KiB a line can carry (less the base64 overhead),
so an image can come as several `image` requests with `"more": true` (each the base64 of the next piece),
or as a `path` the daemon reads. The daemon reads a file only if the client could have read it itself: the
file belongs to the client's user, or everyone may read it (SO_PEERCRED says who the client is), so the
socket is never a way to read the daemon's own secrets.
"""

from __future__ import annotations

import binascii
import os
import stat
from dataclasses import dataclass
from typing import Self

from edgevoice.control.args import Args, DeviceCommand, ServerCommand
from edgevoice.control.limits import MAX_IMAGE, MAX_LINE, MAX_PATH

IMAGE_MIMES = ("image/jpeg", "image/png")  # what the Realtime API's input_image takes

SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


@dataclass(frozen=True)
class Image(ServerCommand):
    """A picture, or a piece of one (`more`), inline (`data`) or from a file the daemon reads (`path`)."""

    name = "image"
    data: bytes | None
    path: str | None
    mime: str | None
    prompt: str | None
    more: bool

    @classmethod
    def read(cls, args: Args) -> Self:
        data, path = args.raw.get("data"), args.raw.get("path")
        if (data is None) == (path is None):
            raise args.fail('give either "data" (base64) or "path" (an absolute file name), not both or neither')
        decoded: bytes | None = None
        name: str | None = None
        if data is not None:
            encoded = args.text("data", max_len=MAX_LINE)
            try:
                decoded = binascii.a2b_base64(encoded, strict_mode=True)
            except (binascii.Error, ValueError) as exc:  # ValueError: characters outside ASCII
                raise args.fail(f"data is not valid base64: {exc}") from None
            args.allow("path")
        else:
            name = args.text("path", max_len=MAX_PATH)
            args.allow("data")
            if not name.startswith("/"):
                raise args.fail(f"path must be absolute (it is read by the daemon), not {name[:200]!r}")
            if "\0" in name:
                raise args.fail("path holds a NUL character: no file has such a name")
        mime = args.optional_text("mime", max_len=64)
        if mime is not None and mime not in IMAGE_MIMES:
            raise args.fail(
                f"mime {mime[:64]!r} is not supported; use one of {', '.join(IMAGE_MIMES)} "
                "(the model takes no other: convert the picture to JPEG or PNG)"
            )
        prompt = args.optional_text("prompt")
        more = args.boolean("more", False)
        if more and path is not None:
            raise args.fail('"more" (a chunk of a larger image) goes with "data", not with "path"')
        return cls(decoded, name, mime, prompt, more)


@dataclass(frozen=True)
class Picture(DeviceCommand):
    """A complete, checked picture (JPEG or PNG) for the conversation; with a prompt, ask about it.

    Not a command of its own on the wire: it is what an `image` request (or its last piece) becomes once
    the server has put it together and checked it (`check`)."""

    name = "image"
    data: bytes
    mime: str
    prompt: str | None


class ImageError(Exception):
    """The picture cannot be used; the message says why."""


def sniff(data: bytes) -> str | None:
    """The picture's type from its first bytes: JPEG, PNG or WebP (which is recognised only to be refused by
    name), else None."""
    for signature, mime in SIGNATURES:
        if data.startswith(signature):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check(data: bytes, mime: str | None, prompt: str | None) -> Picture:
    """The picture for the device, if the model can take it (JPEG or PNG, within the size limit)."""
    if not data:
        raise ImageError("the image is empty")
    if len(data) > MAX_IMAGE:
        raise ImageError(f"the image has {len(data)} bytes; the limit is {MAX_IMAGE} (scale it down)")
    found = sniff(data)
    if found is None:
        raise ImageError("the data is not a JPEG or PNG picture (checked by its first bytes)")
    if found not in IMAGE_MIMES:  # WebP
        raise ImageError("the picture is WebP, which the model does not take: convert it to JPEG or PNG")
    if mime is not None and mime != found:
        raise ImageError(f"mime says {mime} but the data is {found}")
    return Picture(data, found, prompt)


class ImageAssembler:
    """One client's picture arriving in chunks; the chunk without `more` completes it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._mime: str | None = None
        self._prompt: str | None = None

    @property
    def pending(self) -> int:
        return self._size

    def add(self, data: bytes, mime: str | None, prompt: str | None, more: bool) -> Picture | None:
        """Add a chunk; returns the picture when it is complete, None while more is to come."""
        if self._size + len(data) > MAX_IMAGE:
            self.reset()
            raise ImageError(f"the image is over the {MAX_IMAGE} byte limit; its chunks were dropped")
        self._parts.append(data)
        self._size += len(data)
        self._mime = mime or self._mime
        self._prompt = prompt or self._prompt
        if more:
            return None
        data, mime, prompt = b"".join(self._parts), self._mime, self._prompt
        self.reset()
        return check(data, mime, prompt)

    def reset(self) -> None:
        self._parts.clear()
        self._size = 0
        self._mime = self._prompt = None


def read_image_file(path: str, peer_uid: int, mime: str | None, prompt: str | None) -> Picture:
    """Read a picture for a client whose user is `peer_uid` (blocking: run it in a thread).

    To a client that is not root (nor the daemon's user), a file that does not exist, cannot be opened, is not
    a regular file or is not theirs gets the same answer: the socket must not tell which files exist.
    """
    privileged = peer_uid in (0, os.geteuid())
    unusable = ImageError(
        f"{path}: not usable: it must be a regular file the daemon can see (under systemd /tmp is private), "
        f"belonging to your user (uid {peer_uid}) or readable by everyone"
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if not privileged:
            raise unusable from None
        raise ImageError(f"{path}: no such file (as the daemon sees it; under systemd /tmp is private)") from None
    except OSError as exc:
        if not privileged:
            raise unusable from None
        raise ImageError(f"{path}: the daemon cannot open it: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not privileged and (info.st_uid != peer_uid and not info.st_mode & stat.S_IROTH):
            raise unusable
        if not stat.S_ISREG(info.st_mode):
            raise unusable if not privileged else ImageError(f"{path}: not a regular file")
        if info.st_size > MAX_IMAGE:
            raise ImageError(f"{path}: {info.st_size} bytes; the limit is {MAX_IMAGE} (scale it down)")
        parts, size = [], 0
        while size <= MAX_IMAGE and (part := os.read(fd, 1 << 20)):
            parts.append(part)
            size += len(part)
    finally:
        os.close(fd)
    data = b"".join(parts)
    return check(data, mime, prompt)
