"""This machine's LAN addresses, for the URLs a server bound to 0.0.0.0 or :: prints.

The host name is no answer on a LAN without DNS (and Debian maps it to 127.0.1.1), and
asking the routing table by "connecting" a UDP socket picks one address and needs a route.
Linux answers from the interfaces themselves with no packet sent and no new dependency:
SIOCGIFADDR per interface of /proc/net/dev for IPv4, /proc/net/if_inet6 for IPv6. Never
`socket.if_nameindex()`: glibc asks a netlink socket, which the systemd unit's
RestrictAddressFamilies= forbids. Elsewhere, or on any error, the list is empty and the
caller falls back to the host name.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import sys
from pathlib import Path

# <linux/sockios.h>; struct ifreq is 40 bytes on 64-bit Linux (32 on 32-bit), the IPv4
# address at 20..24 on both.
SIOCGIFADDR = 0x8915
IFREQ_SIZE = 40
NET_DEV = Path("/proc/net/dev")
IF_INET6 = Path("/proc/net/if_inet6")
# <linux/if_addr.h>: addresses that are temporary (privacy addresses that change),
# deprecated, not yet checked as unique, or found not unique: no use in a printed URL.
SKIPPED_FLAGS = 0x01 | 0x08 | 0x20 | 0x40
GLOBAL_SCOPE = 0


def _usable(address: str) -> bool:
    """Reachable from another machine: not loopback, not link-local (an fe80:: address
    needs a zone only this machine can name)."""
    ip = ipaddress.ip_address(address)
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def interface_names() -> list[str]:
    """The interfaces in the kernel's order: /proc/net/dev's lines after its two-line head,
    each `name: counters...`."""
    lines = NET_DEV.read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def ipv4_addresses() -> list[str]:
    """Each interface's IPv4 address (the first, where it has several), in interface order."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in interface_names():
            request = struct.pack(f"{IFREQ_SIZE}s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on it, or it went away meanwhile
                continue
            found.append(socket.inet_ntoa(answer[20:24]))
    return found


def ipv6_addresses() -> list[str]:
    """The global IPv6 addresses (ULAs included) that are stable, in interface order.

    A line of /proc/net/if_inet6: address (32 hex digits), interface index, prefix length,
    scope, flags (all hex), interface name.
    """
    rows = []
    for line in IF_INET6.read_text().splitlines():
        fields = line.split()
        if len(fields) != 6 or int(fields[3], 16) != GLOBAL_SCOPE:
            continue
        if int(fields[4], 16) & SKIPPED_FLAGS:
            continue
        packed = bytes.fromhex(fields[0])
        rows.append((int(fields[1], 16), socket.inet_ntop(socket.AF_INET6, packed)))
    return [address for _, address in sorted(rows)]


def interface_addresses(family: socket.AddressFamily) -> list[str]:
    """The addresses of `family` other machines may reach this one at; [] when unknown."""
    if sys.platform != "linux":
        return []
    with contextlib.suppress(OSError, ValueError):
        found = ipv6_addresses() if family == socket.AF_INET6 else ipv4_addresses()
        return [address for address in dict.fromkeys(found) if _usable(address)]
    return []
