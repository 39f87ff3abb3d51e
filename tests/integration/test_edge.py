"""Issue 21's probes at daphne's edge (probes 6, 8, 9, 10, 11) against a real daphne, over
raw sockets and real websockets: what a stranger, a slow client or a demoted member of
staff could do, and can no longer."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from django.contrib.auth.models import User
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.factories import make_ended_job
from tests.processes import ServerProcess, start_daphne
from tokens.services import token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
CONNECTIONS_PER_ADDRESS = 12
BIG_BODY_BYTES = 100 * 1024 * 1024
BLOCK = b"x" * (1024 * 1024)


@pytest.fixture(scope="module")
def edge_env(child_env: dict[str, str]) -> dict[str, str]:
    return {
        **child_env,
        "COREBOARD_UPLOAD_MAX_BYTES": str(200 * 1024 * 1024),
        "COREBOARD_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "COREBOARD_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "COREBOARD_HTTP_BODY_MIN_BYTES_PER_S": "1000",
        "COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS": str(CONNECTIONS_PER_ADDRESS),
        "COREBOARD_SOCKET_SESSION_CHECK_MS": "200",
    }


@pytest.fixture
def daphne(edge_env: dict[str, str]) -> Iterator[tuple[ServerProcess, str]]:
    server, url = start_daphne(edge_env)
    yield server, url
    server.stop()


def _cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _raw(url: str, timeout: float = 30) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)


def _read_all(sock: socket.socket) -> bytes:
    response = b""
    try:
        while chunk := sock.recv(65536):
            response += chunk
    except OSError:
        pass
    return response


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        status: int = response.status
        return status


def _open_socket(
    url: str, path: str, *, origin: str | None, headers: dict[str, str]
) -> ClientConnection:
    return connect(
        url.replace("http://", "ws://") + path,
        origin=Origin(origin) if origin else None,
        additional_headers=headers,
        open_timeout=10,
        legacy=True,  # a plain connection, closed by the test
    )


def _post_big_body(url: str, cookie: str) -> bytes:
    """POST 100 MB to /api/uploads/ from a raw socket with `cookie`; the response's bytes."""
    sock = _raw(url)
    head = (
        "POST /api/uploads/ HTTP/1.1\r\n"
        f"Host: {urlsplit(url).netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=B\r\n"
        f"Content-Length: {BIG_BODY_BYTES}\r\n"
        f"Cookie: {cookie}\r\n\r\n"
    )
    sock.sendall(head.encode())
    try:
        for _ in range(BIG_BODY_BYTES // len(BLOCK)):
            sock.sendall(BLOCK)
    except OSError:
        pass  # the server closes once it has answered and drained for a while
    response = _read_all(sock)
    sock.close()
    return response


# --- probe 6: a fake credential no longer skips the anonymous body limit --------------------


def test_a_fake_session_cookie_gets_401_before_any_body_is_stored(
    daphne: tuple[ServerProcess, str],
) -> None:
    """Five parallel 100 MB bodies with `Cookie: sessionid=x` spooled 674 MB to temporary
    files before their 401s. Now the cookie is checked first and nothing is stored."""
    server, url = daphne
    process = psutil.Process(server.process.pid)
    _get(f"{url}/accounts/login/")  # warm up
    written_before = process.io_counters().write_chars
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda n: _post_big_body(url, f"sessionid=fake{n}"), range(5)))
    written = process.io_counters().write_chars - written_before
    for response in responses:
        assert response.startswith(b"HTTP/1.1 401"), response[:200]
        assert b"does not authenticate" in response
    print(f"daphne wrote {written / 2**20:.2f} MiB for 5 x 100 MB refused bodies")
    assert written < 5 * 1024 * 1024


def test_a_real_credential_still_sends_its_body(
    daphne: tuple[ServerProcess, str], alice: User
) -> None:
    _, url = daphne
    key = token_create(user=alice, name="edge", expires_in_days=1).key
    payload = b"word " * 40_000  # 200 KB: over the anonymous limit
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="words.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + payload + b"\r\n--B--\r\n"
    )
    sock = _raw(url)
    sock.sendall(
        (
            "POST /api/uploads/ HTTP/1.1\r\n"
            f"Host: {urlsplit(url).netloc}\r\n"
            "Content-Type: multipart/form-data; boundary=B\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Authorization: Token {key}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    # The "100 Continue" comes once the token is known to authenticate.
    assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(body)
    response = _read_all(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 201"), response[:300]

    # A real session cookie (no CSRF token: Django answers, not daphne's 401).
    session = _raw(url)
    session.sendall(
        (
            "POST /api/uploads/ HTTP/1.1\r\n"
            f"Host: {urlsplit(url).netloc}\r\n"
            "Content-Type: multipart/form-data; boundary=B\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Cookie: {_cookie(alice)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    )
    answer = _read_all(session)
    session.close()
    assert answer.startswith(b"HTTP/1.1 403"), answer[:300]
    assert b"CSRF" in answer


def test_a_chunked_body_is_checked_too(daphne: tuple[ServerProcess, str], alice: User) -> None:
    """No Content-Length: a fake token gets 401 from daphne; a valid one reaches the
    application (whose multipart parser needs a Content-Length: its own 400)."""
    _, url = daphne
    key = token_create(user=alice, name="edge", expires_in_days=1).key
    piece = b"chunked words " * 5_000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(4)) + b"0\r\n\r\n"

    def post(token: str) -> bytes:
        sock = _raw(url)
        head = (
            "POST /api/uploads/ HTTP/1.1\r\n"
            f"Host: {urlsplit(url).netloc}\r\n"
            "Content-Type: multipart/form-data; boundary=B\r\n"
            "Transfer-Encoding: chunked\r\n"
            f"Authorization: Token {token}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + chunked)  # at once: part of it comes with the headers
        response = _read_all(sock)
        sock.close()
        return response

    refused = post("cb_fake")
    assert refused.startswith(b"HTTP/1.1 401"), refused[:200]
    assert b"does not authenticate" in refused
    answered = post(key)
    assert answered.startswith(b"HTTP/1.1 400"), answered[:300]
    assert b"multipart form data" in answered


# --- probe 9: slow clients are cut off; one address holds a bounded number of connections ---


def test_header_tricklers_are_cut_off_while_a_normal_client_gets_through(
    daphne: tuple[ServerProcess, str],
) -> None:
    """1,000 connections trickling headers stayed open indefinitely."""
    _, url = daphne
    results: list[tuple[float, bytes]] = []

    def trickle() -> None:
        sock = _raw(url)
        began = time.monotonic()
        line = b"GET /accounts/login/ HTTP/1.1\r\nX-Slow: " + b"a" * 200
        try:
            for byte in line:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)  # the trickle itself: a byte every 50 ms
        except OSError:
            pass
        results.append((time.monotonic() - began, _read_all(sock)))
        sock.close()

    tricklers = [threading.Thread(target=trickle) for _ in range(4)]
    for thread in tricklers:
        thread.start()
    assert _get(f"{url}/accounts/login/") == 200  # a normal client meanwhile
    for thread in tricklers:
        thread.join(timeout=30)
    assert len(results) == 4
    for elapsed, response in results:
        assert response.startswith(b"HTTP/1.1 408"), response[:200]
        assert b"COREBOARD_HTTP_HEADER_TIMEOUT_S" in response
        assert HEADER_TIMEOUT_S - 0.5 < elapsed < HEADER_TIMEOUT_S + 5, elapsed


def test_an_idle_connection_is_closed_without_an_answer(
    daphne: tuple[ServerProcess, str],
) -> None:
    """Nothing sent, or nothing more after a response on a kept-alive connection: closed
    silently at the header deadline (a 408 could cross the client's next request)."""
    _, url = daphne
    idle = _raw(url)
    kept = _raw(url)
    kept.sendall(f"GET /accounts/login/ HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n\r\n".encode())
    first = kept.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    began = time.monotonic()
    rest = _read_all(kept)  # what remains of the page, then the close
    assert b"HTTP/1.1 408" not in rest
    assert _read_all(idle) == b""
    assert time.monotonic() - began < HEADER_TIMEOUT_S + 5
    idle.close()
    kept.close()


def test_a_slow_body_is_cut_off(daphne: tuple[ServerProcess, str]) -> None:
    _, url = daphne
    sock = _raw(url)
    sock.sendall(
        (
            "POST /accounts/login/ HTTP/1.1\r\n"
            f"Host: {urlsplit(url).netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 30000\r\n\r\n"
        ).encode()
    )
    began = time.monotonic()
    try:
        for _ in range(3000):  # 10 bytes every 50 ms: 200 bytes/s, under the 1000 required
            sock.sendall(b"a" * 10)
            time.sleep(0.05)
    except OSError:
        pass
    response = _read_all(sock)
    elapsed = time.monotonic() - began
    sock.close()
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert b"COREBOARD_HTTP_BODY_MIN_BYTES_PER_S" in response
    # The deadline: the grace plus a second per 1000 bytes that came (~200 a second).
    assert BODY_TIMEOUT_S < elapsed < BODY_TIMEOUT_S * 2 + 5, elapsed


def test_connections_per_address_are_capped_and_given_back(
    daphne: tuple[ServerProcess, str], alice: User
) -> None:
    """Websockets count too, and give their place back when they close."""
    _, url = daphne
    cookie = _cookie(alice)
    sockets = [
        _open_socket(url, "/ws/overview/", origin=url, headers={"Cookie": cookie})
        for _ in range(CONNECTIONS_PER_ADDRESS)
    ]
    try:
        refused = _raw(url)
        response = _read_all(refused)
        refused.close()
        assert response.startswith(b"HTTP/1.1 429"), response[:200]
        assert b"COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS" in response
    finally:
        for ws in sockets:
            ws.close()
    deadline = time.monotonic() + 10
    while True:  # the server hears the closes in its own time
        try:
            assert _get(f"{url}/accounts/login/") == 200
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- probe 8: every cookie-authenticated socket has its Origin checked -----------------------


def test_an_authorization_header_does_not_skip_the_origin_check(
    daphne: tuple[ServerProcess, str], alice: User
) -> None:
    _, url = daphne
    job = make_ended_job(alice)
    path = f"/ws/jobs/{job.pk}/"
    cookie = _cookie(alice)
    foreign = "http://evil.example"
    for authorization in ("Basic eDp4", "Token not-a-real-token", "Bearer x"):
        with pytest.raises(InvalidStatus) as refused:
            _open_socket(
                url,
                path,
                origin=foreign,
                headers={"Cookie": cookie, "Authorization": authorization},
            )
        assert refused.value.response.status_code == 403
    # The site's own page with the same headers is fine.
    with _open_socket(
        url, path, origin=url, headers={"Cookie": cookie, "Authorization": "Basic eDp4"}
    ) as ws:
        assert _next(ws)["type"] == "job.snapshot"
    # A valid token (the command line: no ambient credential) needs no Origin.
    key = token_create(user=alice, name="cli", expires_in_days=1).key
    with _open_socket(url, path, origin=None, headers={"Authorization": f"Token {key}"}) as ws:
        assert _next(ws)["type"] == "job.snapshot"


def _next(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
        if message.get("type") != "broker.state":
            return message


def _close_code(ws: ClientConnection, timeout: float = 10) -> int | None:
    """The code the server closes the socket with (messages before it are skipped)."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


# --- probe 10: staff status and passwords take effect on open sockets ------------------------


def test_a_demoted_member_of_staff_loses_other_peoples_jobs_on_open_sockets(
    daphne: tuple[ServerProcess, str], alice: User, staff: User
) -> None:
    _, url = daphne
    job = make_ended_job(alice)
    cookie = _cookie(staff)
    ws = _open_socket(url, f"/ws/jobs/{job.pk}/", origin=url, headers={"Cookie": cookie})
    assert _next(ws)["type"] == "job.snapshot"
    staff.is_staff = False
    staff.save(update_fields=["is_staff"])
    assert _close_code(ws) == 4404
    # Alice's own socket is untouched by it.
    with _open_socket(
        url, f"/ws/jobs/{job.pk}/", origin=url, headers={"Cookie": _cookie(alice)}
    ) as own:
        assert _next(own)["type"] == "job.snapshot"


def test_a_password_change_closes_token_sockets(
    daphne: tuple[ServerProcess, str], alice: User
) -> None:
    _, url = daphne
    job = make_ended_job(alice)
    key = token_create(user=alice, name="cli", expires_in_days=1).key
    ws = _open_socket(
        url, f"/ws/jobs/{job.pk}/", origin=None, headers={"Authorization": f"Token {key}"}
    )
    assert _next(ws)["type"] == "job.snapshot"
    alice.set_password("a-new-password-2")
    alice.save()
    assert _close_code(ws) == 4401


# --- probe 11: no secrets in the access log ------------------------------------------------------


def test_the_access_log_keeps_no_query_values(daphne: tuple[ServerProcess, str]) -> None:
    server, url = daphne
    _get(f"{url}/accounts/login/?token=cb_s3cret-value&next=/jobs/")
    server.wait_for_line("/accounts/login/?token=-&next=-")
    assert "cb_s3cret-value" not in server.output()
