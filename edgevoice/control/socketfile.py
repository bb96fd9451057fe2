"""Creating the control socket's file safely, and reading who is on the other end (SO_PEERCRED).

The socket is bound inside a private (0700) temporary directory next to its final place, given its mode
and group there, and only then linked into place: nobody can connect during a window with the wrong
permissions, and the process umask (shared with every thread) is never touched. A socket file left by a
crash is replaced; one that still answers belongs to another running instance and is left alone.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUN_PATH_MAX = 107  # bytes of a Unix socket path (108 with its NUL)
BACKLOG = 16


class SocketFileError(Exception):
    """The socket cannot be created; the message says why and what to change."""


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a connection, as the kernel says (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int

    def describe(self) -> str:
        return f"pid {self.pid} ({process_name(self.pid)}), uid {self.uid}, gid {self.gid}"


def peer_credentials(sock: socket.socket) -> Peer:
    """The connecting process's pid, uid and gid as the kernel recorded them at connect()."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def process_name(pid: int) -> str:
    """The command name of `pid` if this process may see it (under ProtectProc=invisible it often may not)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "?"


def resolve_group(group: str) -> int | None:
    """The gid for the configured group ("" = keep the daemon's own group: None)."""
    if not group:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketFileError(
            f"[control] group = {group!r}: no such group; create it (sudo groupadd --system {group}; "
            f'scripts/provision does) or set group = "" to use the daemon\'s own group'
        ) from None


def bind_control_socket(path: str, mode: int, gid: int | None) -> tuple[socket.socket, list[str]]:
    """A listening socket at `path` with `mode` and group `gid`; also warnings worth logging. Blocking."""
    if not os.path.isabs(path):
        raise SocketFileError(f"[control] socket = {path!r}: use an absolute path")
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise SocketFileError(f"[control] socket = {path!r}: Unix socket paths are limited to {SUN_PATH_MAX} bytes")
    parent = os.path.dirname(path)
    _make_parent(parent, gid)
    _clear_stale(path)
    workdir = _private_dir(parent)
    temporary = os.path.join(workdir, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(temporary)) > SUN_PATH_MAX:
            raise SocketFileError(f"[control] socket = {path!r}: the directory's path is too long for a socket")
        sock.bind(temporary)
        os.chmod(temporary, mode)
        if gid is not None and os.stat(temporary).st_gid != gid:  # under systemd it is already (Group=)
            _chown(temporary, gid)
        try:
            os.link(temporary, path)  # unlike rename, never replaces a socket another instance made meanwhile
        except FileExistsError:
            raise SocketFileError(
                f"{path} appeared while this instance was creating it: is edgevoice starting twice?"
            ) from None
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        with contextlib.suppress(OSError):
            os.rmdir(workdir)
    return sock, _reachability_warnings(path, parent, mode, gid)


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, to remove only our own socket at the end."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def remove_if_ours(path: str, ours: tuple[int, int] | None) -> None:
    if ours is not None and identity(path) == ours:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _make_parent(parent: str, gid: int | None) -> None:
    if os.path.isdir(parent):
        return
    try:
        os.mkdir(parent, 0o750)  # one level: /run/edgevoice when not started by systemd (RuntimeDirectory=)
        if gid is not None and os.stat(parent).st_gid != gid:
            _chown(parent, gid)
    except FileNotFoundError:
        raise SocketFileError(f"[control] socket: the directory {os.path.dirname(parent)} does not exist") from None
    except PermissionError:
        raise SocketFileError(
            f"[control] socket: cannot create the directory {parent} (permission denied); run under systemd "
            f"(RuntimeDirectory=edgevoice) or set socket to a path this user can write, e.g. in $XDG_RUNTIME_DIR"
        ) from None


def _clear_stale(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketFileError(f"{path} exists and is not a socket; remove it or set [control] socket elsewhere")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
        owner = peer_credentials(probe)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a process that died: nobody listens on it
        return
    except OSError as exc:
        raise SocketFileError(f"{path}: cannot tell whether it is still in use: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise SocketFileError(
        f"{path} is in use by another running program ({owner.describe()}): is edgevoice already running? "
        f"Stop it, or give this instance another [control] socket"
    )


def _private_dir(parent: str) -> str:
    try:
        return tempfile.mkdtemp(prefix=".control-", dir=parent)
    except PermissionError:
        raise SocketFileError(f"cannot create the control socket in {parent}: permission denied") from None


def _chown(path: str, gid: int) -> None:
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        raise SocketFileError(
            f"cannot give {path} to group {gid}: this process (uid {os.geteuid()}) is not a member of it, or "
            f"its service forbids chown (edgevoice.service does: there the socket gets the service's Group=); "
            f'add the daemon\'s user to the group, or set [control] group = ""'
        ) from None


def _reachability_warnings(path: str, parent: str, mode: int, gid: int | None) -> list[str]:
    """Controllers in the group also need to get through the directory; say so if they cannot."""
    warnings: list[str] = []
    try:
        info = os.stat(parent)
    except OSError:
        return warnings
    group_can = info.st_mode & stat.S_IXGRP and (gid is None or info.st_gid == gid)
    if gid is not None and not (group_can or info.st_mode & stat.S_IXOTH):
        warnings.append(
            f"members of group {gid} cannot reach {path}: its directory {parent} is mode "
            f"{stat.S_IMODE(info.st_mode):04o} with group {info.st_gid}"
        )
    if mode & 0o006:
        warnings.append(f"{path} is open to every local user (mode {mode:04o}); consider [control] allowed_uids")
    return warnings
