"""A webhook receiver the test suite starts on 127.0.0.1: records every POST (its headers
and body), answers with the statuses it is told, and can hold a request open until the
test lets it go (to kill the sender mid-delivery)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def delivery_id(self) -> str:
        return self.headers["Coreboard-Delivery"]


@dataclass
class Receiver:
    url: str
    posts: list[Received] = field(default_factory=list)
    # Statuses of the next answers, in order; 200 once they are used up.
    statuses: list[int] = field(default_factory=list)
    # The POSTs (1: the first) held open, once recorded, until `release` is set; `holding`
    # is set while one is held.
    hold_posts: set[int] = field(default_factory=set)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def unique_ids(self) -> set[str]:
        return {post.delivery_id for post in self.posts}

    def wait_for(self, count: int, timeout: float = 60) -> list[Received]:
        """Block until `count` POSTs arrived (a condition, not a poll); all of them."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.posts) >= count, timeout=timeout):
                raise AssertionError(f"{len(self.posts)} POST(s) arrived, not {count}")
            return list(self.posts)


@contextmanager
def webhook_receiver(path: str = "/hook") -> Iterator[Receiver]:
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert receiver is not None
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.changed:
                receiver.posts.append(Received(dict(self.headers.items()), body, time.monotonic()))
                hold = len(receiver.posts) in receiver.hold_posts
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.changed.notify_all()
            if hold:
                receiver.holding.set()
                receiver.release.wait(timeout=120)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answer {status}".encode())
            except OSError:
                pass  # the sender is gone (killed while we held its request)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}{path}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
