"""What a URL points at, decided once for the whole device: is it this machine (loopback)?

Loopback is decided on the host alone, exactly: `localhost` (RFC 6761 reserves it for this machine) or an IP
address in 127.0.0.0/8 or ::1. Nothing else is loopback, however it starts: `localhost.example.com` and
`127.0.0.1.nip.io` are somebody else's machines.
"""

from __future__ import annotations

import ipaddress
import urllib.parse


def is_loopback_host(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:  # e.g. an unbalanced [ in the netloc
        return False
    return host is not None and is_loopback_host(host)
