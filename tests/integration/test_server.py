"""The daphne seam (launcher.server) against a real daphne: bodies cost what they weigh."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import psutil
import pytest
from django.contrib.auth.models import User

from jobs.models import Upload
from tests.processes import ServerProcess, start_daphne
from tokens.services import token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BIG_BODY_BYTES = 100 * 1024 * 1024
BLOCK = b"x" * (1024 * 1024)


@pytest.fixture
def daphne(child_env: dict[str, str]) -> Iterator[tuple[ServerProcess, str]]:
    server, url = start_daphne(child_env)
    yield server, url
    server.stop()


class RssSampler:
    """The peak RSS of a process while the block runs, sampled every 5 ms."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def post_big_body(url: str, *, cookie: str = "", chunked: bool = False) -> bytes:
    """POST 100 MB of multipart to /api/uploads/ from a raw socket; the response's bytes."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
    head = [
        "POST /api/uploads/ HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: multipart/form-data; boundary=BOUNDARY",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG_BODY_BYTES}",
    ]
    if cookie:
        head.append(f"Cookie: {cookie}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    try:
        opening = b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        sock.sendall(opening)
        for _ in range(BIG_BODY_BYTES // len(BLOCK) - 1):
            block = b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK) if chunked else BLOCK
            sock.sendall(block)
    except OSError:
        pass  # the server may close once it has answered and drained for a while
    response = b""
    try:
        while chunk := sock.recv(65536):
            response += chunk
    except OSError:
        pass
    sock.close()
    return response


def test_a_100_mb_upload_without_credentials_costs_daphne_nothing(
    daphne: tuple[ServerProcess, str],
) -> None:
    server, url = daphne
    process = psutil.Process(server.process.pid)
    login = f"{url}/accounts/login/"
    urllib.request.urlopen(login, timeout=10).read()  # warm up  # noqa: S310
    before = process.memory_info().rss
    latencies: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            began = time.perf_counter()
            urllib.request.urlopen(login, timeout=10).read()  # noqa: S310
            latencies.append(time.perf_counter() - began)

    watcher = threading.Thread(target=watch)
    with RssSampler(process) as sampler:
        watcher.start()
        try:
            response = post_big_body(url)
        finally:
            done.set()
            watcher.join()
    peak = sampler.peak
    assert response.startswith((b"HTTP/1.1 401", b"HTTP/1.1 413")), response[:200]
    assert b"application/json" in response
    assert latencies
    assert max(latencies) < 0.3, latencies
    print(
        f"RSS growth {(peak - before) / 2**20:.1f} MiB, slowest GET {max(latencies) * 1000:.0f} ms"
    )
    assert peak - before < 50 * 1024 * 1024, (before, peak)


def test_an_over_limit_body_with_a_session_cookie_is_refused_with_413(
    daphne: tuple[ServerProcess, str],
) -> None:
    server, url = daphne
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    response = post_big_body(url, cookie="sessionid=whatever")
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"larger than the limit" in response
    assert process.memory_info().rss - before < 50 * 1024 * 1024


def test_an_accepted_100_mb_upload_costs_its_size_on_disk_not_in_memory(
    child_env: dict[str, str], alice: User
) -> None:
    server, url = start_daphne(child_env | {"COREBOARD_UPLOAD_MAX_BYTES": str(200 * 1024**2)})
    try:
        process = psutil.Process(server.process.pid)
        token = token_create(user=alice, name="upload test", expires_in_days=1).key
        parts = urlsplit(url)
        opening = (
            b"--BOUNDARY\r\n"
            b'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n"
        )
        closing = b"\r\n--BOUNDARY--\r\n"
        words = b"word " * (len(BLOCK) // 5)
        blocks = BIG_BODY_BYTES // len(words)
        head = (
            "POST /api/uploads/ HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            f"Authorization: Token {token}\r\n"
            "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
            f"Content-Length: {len(opening) + blocks * len(words) + len(closing)}\r\n\r\n"
        )
        urllib.request.urlopen(f"{url}/accounts/login/", timeout=10).read()  # noqa: S310
        before = process.memory_info().rss
        with RssSampler(process) as sampler:
            sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=120)
            sock.sendall(head.encode() + opening)
            for _ in range(blocks):
                sock.sendall(words)
            sock.sendall(closing)
            response = b""
            while not response.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response += chunk
            sock.close()
        peak = sampler.peak
        assert response.startswith(b"HTTP/1.1 201"), response[:300]
        assert Upload.objects.get().size == blocks * len(words)
        print(f"accepted upload: RSS growth {(peak - before) / 2**20:.1f} MiB")
        assert peak - before < 50 * 1024 * 1024, (before, peak)
    finally:
        server.stop()


def test_a_chunked_body_without_credentials_is_refused(daphne: tuple[ServerProcess, str]) -> None:
    _, url = daphne
    response = post_big_body(url, chunked=True)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]


def test_small_anonymous_posts_still_reach_the_application(
    daphne: tuple[ServerProcess, str],
) -> None:
    _, url = daphne
    request = urllib.request.Request(  # noqa: S310
        f"{url}/accounts/login/", data=b"username=a&password=b", method="POST"
    )
    # Django's CSRF check answers, so the body reached the application.
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
