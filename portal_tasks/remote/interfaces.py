"""This host's network addresses: an interface's IPv4 address, and the source address of the route to a peer."""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Any

from .common import Failure

SIOCGIFADDR = 0x8915


def interface_address(name: str) -> str:
    """The IPv4 address of network interface ``name`` on this host (Failure naming it when there is none)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        raise Failure(f"scheduler_interface {name!r} is not an interface with an IPv4 address on this host.",
                      "ConfigError", hint="Set scheduler_interface for this host in portal.yaml to one `ip -4 addr` "
                                          "lists, the one the other servers reach it by.") from None
    finally:
        sock.close()


def route_source(address: str) -> str:
    """This host's address on the way to ``address`` (no packet is sent: a UDP socket only picks its route)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((address, 9))
        return str(sock.getsockname()[0])
    except OSError as exc:
        raise Failure(f"this server has no route to the scheduler's host {address} ({exc.strerror}).", "ClusterError",
                      hint="Pick a scheduler_interface the workers' servers reach.") from None
    finally:
        sock.close()


def address_verb(payload: dict[str, Any]) -> dict[str, str]:
    """Verb ``interface-address`` {name}: the IPv4 address of that interface here (read-only, for --explain)."""
    return {"address": interface_address(payload["name"])}


def route_verb(payload: dict[str, Any]) -> dict[str, str]:
    """Verb ``route-source`` {address}: this host's address on the way to that one (read-only, for --explain)."""
    return {"address": route_source(payload["address"])}


VERBS = {"interface-address": address_verb, "route-source": route_verb}
