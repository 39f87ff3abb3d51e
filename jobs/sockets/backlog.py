"""How many bytes a websocket has written that its client has not taken yet.

An ASGI `send` never blocks: under daphne it hands the frame to twisted, which buffers in
memory whatever the client's TCP window does not take. A client that stops reading made
daphne's memory grow without bound and, with it, every other socket's updates late
(issue 19). A consumer reads this backlog before each update it could skip
(jobs.sockets.guards.GuardedConsumer.send_update) and stops sending once it is over
COREBOARD_SOCKET_BACKLOG_BYTES.

Nothing in ASGI exposes the backlog, so WriteBacklog (the outermost websocket middleware,
project/asgi.py) finds it in what daphne passes as `send`: `partial(Server.handle_reply,
protocol)`, the protocol's twisted transport buffering `dataBuffer[offset:]` plus
`_tempDataLen` bytes, and the kernel holding the bytes sent but not acknowledged. Under
another server, or a transport without those (TLS terminated by twisted), there is no
probe and no bound; a reverse proxy buffers for such a server.
"""

from __future__ import annotations

import fcntl
import functools
import struct
import termios
from collections.abc import Callable
from typing import Any

SCOPE_KEY = "coreboard.write_backlog"

Probe = Callable[[], int]


def _kernel_unsent(transport: Any) -> int:
    """Bytes in the socket's kernel send queue that the client has not acknowledged
    (Linux's SIOCOUTQ; 0 where it cannot be read). Without them, a client that stopped
    reading looked as if it had caught up each time the kernel grew its send buffer and
    took twisted's bytes."""
    try:
        answer = fcntl.ioctl(transport.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", answer)[0])


def _transport_backlog(transport: Any) -> int | None:
    if transport is None:
        return 0  # closed: nothing more is buffered
    buffered = getattr(transport, "dataBuffer", None)
    pending = getattr(transport, "_tempDataLen", None)
    offset = getattr(transport, "offset", 0)
    if buffered is None or not isinstance(pending, int) or not isinstance(offset, int):
        return None
    return len(buffered) - offset + pending + _kernel_unsent(transport)


def probe_for(send: Any) -> Probe | None:
    """A function returning the bytes `send` has buffered, when `send` is daphne's."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    if not hasattr(protocol, "transport"):
        return None
    if _transport_backlog(protocol.transport) is None:
        return None

    def backlog() -> int:
        return _transport_backlog(protocol.transport) or 0

    return backlog


def backlog_of(scope: dict[str, Any]) -> int:
    """The socket's unsent bytes (0 where the server offers no way to tell)."""
    probe: Probe | None = scope.get(SCOPE_KEY)
    return probe() if probe is not None else 0


class WriteBacklog:
    """ASGI middleware: puts the backlog probe of a websocket's `send` in its scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            probe = probe_for(send)
            if probe is not None:
                scope = {**scope, SCOPE_KEY: probe}
        await self.app(scope, receive, send)
