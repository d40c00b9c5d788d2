"""ZeroMQ endpoints, checked before a socket sees them: `tcp://HOST:PORT`, `ipc://PATH`,
`inproc://NAME`.

ZeroMQ reports a bad endpoint only when it binds or connects (`Invalid argument`, `No such
device`), deep inside a run; these checks say what is wrong up front, in one line.
Syntax follows the zmq_tcp(7), zmq_ipc(7) and zmq_inproc(7) manual pages.
"""

from __future__ import annotations

import ipaddress
import re
import socket

# sockaddr_un.sun_path holds 108 bytes on Linux, one of them the terminating NUL (zmq_ipc(7)).
IPC_PATH_MAX = 107

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_DOTTED = re.compile(r"[0-9]+(?:\.[0-9]+){3}")


def endpoint_problem(endpoint: object, *, bind: bool) -> str | None:
    """What is wrong with `endpoint`, or None. `bind` allows the wildcards a coordinator may
    bind (`tcp://*:5555`, `tcp://127.0.0.1:*`) and checks that an IP literal is one of this
    host's addresses; a worker connects and needs a real host and port."""
    if not isinstance(endpoint, str):
        return f"expected an endpoint string such as tcp://host:5555, got {endpoint!r}"
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return f"{endpoint!r} is not an endpoint (expected tcp://host:port or ipc:///path)"
    if scheme == "tcp":
        return _tcp_problem(endpoint, rest, bind)
    if scheme == "ipc":
        if not rest or rest == "*" and not bind:
            return f"{endpoint!r}: ipc needs a path, e.g. ipc:///tmp/fedsim.sock"
        if "\0" in rest:
            return f"{endpoint!r}: ipc path holds a NUL byte"
        if len(rest.encode()) > IPC_PATH_MAX:
            return f"{endpoint!r}: ipc path is longer than {IPC_PATH_MAX} bytes (the OS limit)"
        return None
    if scheme == "inproc":
        return None if rest else f"{endpoint!r}: inproc needs a name"
    return f"{endpoint!r}: unknown transport {scheme!r} (tcp, ipc or inproc)"


def _tcp_problem(endpoint: str, rest: str, bind: bool) -> str | None:
    host, colon, port = rest.rpartition(":")
    if not colon or not host:
        return f"{endpoint!r}: tcp needs host:port, e.g. tcp://127.0.0.1:5555"
    if ";" in host:  # a source address (zmq_tcp(7)): check the part that is the peer
        _, host = host.rsplit(";", 1)
    if port == "*" or port == "0":
        if not bind:
            return f"{endpoint!r}: a worker connects to a real port, not {port!r}"
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{endpoint!r}: port {port!r} is not a number from 1 to 65535"
    if host == "*":
        return None if bind else f"{endpoint!r}: a worker connects to a host, not '*'"
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(literal)
    except ValueError:
        if _DOTTED.fullmatch(literal) or literal != host:
            return f"{endpoint!r}: {literal!r} is not an IP address"
        if not _HOSTNAME.fullmatch(host):
            return f"{endpoint!r}: {host!r} is not a host name or IP address"
        return None  # a host or interface name: resolved by ZeroMQ
    if bind and not addr.is_unspecified and not _is_local(addr):
        return f"{endpoint!r}: {addr} is not an address of this host, so nothing can bind it"
    return None


def _is_local(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((str(addr), 0))
    except OSError:
        return False
    return True
