"""A loopback Redis stand-in for tests: it answers, or hangs as a stopped Redis does."""

from __future__ import annotations

import socket
import threading


class FakeRedis:
    """Answers PING with PONG, HELLO with the protocol and anything else with OK, unless
    `hung` (it then reads and never replies, as a SIGSTOPped Redis whose kernel still
    accepts connections)."""

    # HELLO: redis-py 8 speaks RESP3 and checks the protocol the server agreed to.
    REPLIES = {b"PING": b"+PONG\r\n", b"HELLO": b"%1\r\n+proto\r\n:3\r\n"}

    def __init__(self) -> None:
        self.hung = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.commands = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn:
            while True:
                header = reader.readline()
                if not header:
                    return
                args = []
                for _ in range(int(header[1:])):
                    length = int(reader.readline()[1:])
                    args.append(reader.read(length + 2)[:-2])
                self.commands += 1
                if self.hung.is_set():
                    continue
                conn.sendall(self.REPLIES.get(args[0].upper(), b"+OK\r\n"))

    def close(self) -> None:
        self.listener.close()
