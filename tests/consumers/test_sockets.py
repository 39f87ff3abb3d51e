"""Websockets as strict as pages (jobs.sockets.guards): origin, caps, sessions, frame sizes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from jobs import protocol
from jobs.engine import workers
from jobs.models import Job
from jobs.selectors import jobs as selectors
from project.asgi import application
from tests.factories import make_unclaimable_job
from tests.sockets import db_sync_to_async

pytestmark = [
    pytest.mark.consumers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("in_memory_channel_layer"),
]

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _quick_session_checks(settings: Any) -> None:
    settings.COREBOARD_SOCKET_SESSION_CHECK_MS = 500


@db_sync_to_async
def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def socket(
    path: str, client: Client | None, *, origin: str = "http://127.0.0.1", host: str = "127.0.0.1"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", host.encode())]
    if client is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


create_job = database_sync_to_async(make_unclaimable_job)


async def closed_with(communicator: WebsocketCommunicator, timeout: float) -> int | None:
    """Read until the socket closes; its close code (None: still open after `timeout`)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await communicator.output_queue.get()
                if message["type"] == "websocket.close":
                    return int(message.get("code", 1000))
    except TimeoutError:
        return None


# --- origin ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:1", "127.0.0.1"),
        ("http://localhost:9999", "localhost"),
        ("https://127.0.0.1", "127.0.0.1"),
        ("http://127.0.0.1", "127.0.0.1:8000"),
        ("http://evil.example", "evil.example"),
        ("null", "127.0.0.1"),
    ],
)
async def test_a_foreign_origin_is_refused(alice: User, origin: str, host: str) -> None:
    communicator = socket("/ws/overview/", await logged_in(alice), origin=origin, host=host)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


@pytest.mark.parametrize("authorization", [b"Basic eDp4", b"Bearer x", b"Token not-a-token"])
async def test_an_authorization_header_that_authenticates_no_one_skips_no_origin_check(
    alice: User, authorization: bytes
) -> None:
    """Issue 21 probe 8: any Authorization header skipped the check, so a foreign page's
    `Basic x` with the visitor's cookie got a snapshot."""
    communicator = socket("/ws/overview/", await logged_in(alice), origin="http://evil.example")
    communicator.scope["headers"].append((b"authorization", authorization))
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1", "127.0.0.1"),
        ("http://127.0.0.1:8123", "127.0.0.1:8123"),
        ("http://localhost:8123", "localhost:8123"),
    ],
)
async def test_the_sites_own_origin_is_accepted(alice: User, origin: str, host: str) -> None:
    communicator = socket("/ws/overview/", await logged_in(alice), origin=origin, host=host)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.disconnect()


async def test_csrf_trusted_origins_are_accepted_exactly(alice: User, settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://coreboard.example"]
    client = await logged_in(alice)
    trusted = socket("/ws/overview/", client, origin="https://coreboard.example")
    assert (await trusted.connect(timeout=5))[0]
    await trusted.disconnect()
    other_port = socket("/ws/overview/", client, origin="https://coreboard.example:8443")
    assert not (await other_port.connect(timeout=5))[0]


async def test_behind_a_tls_proxy_the_https_origin_is_the_sites(alice: User, settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    communicator = WebsocketCommunicator(
        application,
        "/ws/overview/",
        headers=[
            (b"origin", b"https://localhost"),
            (b"host", b"localhost"),
            (b"x-forwarded-proto", b"https"),
            (
                b"cookie",
                f"sessionid={(await logged_in(alice)).cookies['sessionid'].value}".encode(),
            ),
        ],
    )
    assert (await communicator.connect(timeout=5))[0]
    await communicator.disconnect()


# --- resync, caps, sessions --------------------------------------------------------------------


async def test_50_resyncs_in_a_second_give_at_most_a_few_snapshots(alice: User) -> None:
    job = await create_job(alice)
    communicator = socket(f"/ws/jobs/{job.pk}/", await logged_in(alice))
    assert (await communicator.connect(timeout=5))[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "job.snapshot"
    began = time.monotonic()
    for _ in range(50):
        await communicator.send_json_to({"type": "resync"})
    assert time.monotonic() - began < 1
    snapshots = 0
    while not await communicator.receive_nothing(timeout=2.5):
        snapshots += (await communicator.receive_json_from())["type"] == "job.snapshot"
    assert 1 <= snapshots <= 3
    await communicator.disconnect()


async def test_open_sockets_per_person_are_capped(alice: User, bob: User, settings: Any) -> None:
    settings.COREBOARD_MAX_SOCKETS_PER_USER = 2
    client = await logged_in(alice)
    first, second, third = (socket("/ws/overview/", client) for _ in range(3))
    assert (await first.connect(timeout=5))[0]
    assert (await second.connect(timeout=5))[0]
    assert (await third.connect(timeout=5))[0]
    assert await closed_with(third, timeout=5) == 4429
    bobs = socket("/ws/overview/", await logged_in(bob))
    assert (await bobs.connect(timeout=5))[0]
    await first.disconnect()
    again = socket("/ws/overview/", client)
    assert (await again.connect(timeout=5))[0]
    assert await closed_with(again, timeout=1.5) is None
    for communicator in (second, bobs, again):
        await communicator.disconnect()


async def test_logging_out_closes_the_overview_socket_within_5_s(alice: User) -> None:
    client = await logged_in(alice)
    communicator = socket("/ws/overview/", client)
    assert (await communicator.connect(timeout=5))[0]
    await database_sync_to_async(client.post)("/accounts/logout/")
    began = time.monotonic()
    assert await closed_with(communicator, timeout=5) == protocol.CLOSE_UNAUTHENTICATED
    assert time.monotonic() - began < 5


async def test_a_password_change_closes_the_job_socket(alice: User) -> None:
    job = await create_job(alice)
    communicator = socket(f"/ws/jobs/{job.pk}/", await logged_in(alice))
    assert (await communicator.connect(timeout=5))[0]

    @db_sync_to_async
    def change_password() -> None:
        alice.set_password("a-new-password-2")
        alice.save()

    await change_password()
    assert await closed_with(communicator, timeout=5) == protocol.CLOSE_UNAUTHENTICATED


async def test_an_expired_session_closes_the_socket(alice: User) -> None:
    client = await logged_in(alice)
    communicator = socket("/ws/overview/", client)
    assert (await communicator.connect(timeout=5))[0]

    @db_sync_to_async
    def expire() -> None:
        from django.contrib.sessions.models import Session

        Session.objects.filter(session_key=client.cookies["sessionid"].value).update(
            expire_date=timezone.now()
        )

    await expire()
    assert await closed_with(communicator, timeout=5) == protocol.CLOSE_UNAUTHENTICATED


# --- the overview's frames -------------------------------------------------------------------


@db_sync_to_async
def many_active_jobs(owner: User, count: int) -> None:
    Job.objects.bulk_create(
        Job(
            owner=owner,
            kind="burn",
            params={"chunks": 10, "ms": 1},
            status=Job.Status.RUNNING,
            parallelism=4,
            total_chunks=10,
            started_at=timezone.now(),
        )
        for _ in range(count)
    )


async def test_2000_active_jobs_keep_the_overview_under_1_mib(staff: User) -> None:
    await many_active_jobs(staff, 2000)
    communicator = socket("/ws/overview/", await logged_in(staff))
    assert (await communicator.connect(timeout=5))[0]
    for _ in range(2):  # the first push and the next one
        frame = await communicator.receive_from(timeout=10)
        assert len(frame.encode()) < MIB
        state = json.loads(frame)
        assert len(state["active"]) == 100
        assert state["active_more"] == 1900
    await communicator.disconnect()


async def test_an_error_in_the_overview_loop_closes_the_socket_with_a_code(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(selectors, "overview", broken)
    communicator = socket("/ws/overview/", await logged_in(alice))
    assert (await communicator.connect(timeout=5))[0]
    assert await closed_with(communicator, timeout=5) == 4500


async def test_the_overview_never_shows_another_persons_job_ids(
    alice: User, mallory: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = await create_job(alice)
    theirs = await create_job(mallory)

    def busy_cluster(conn: Any = None) -> dict[str, Any]:
        def process(pid: int, job_id: int) -> dict[str, Any]:
            return {
                "host": "w1", "pid": pid, "core": 0, "state": "busy", "job_id": job_id,
                "chunk_index": 2, "since": 0.0, "last_seen": 0.0,
            }  # fmt: skip

        return {
            "now": 0.0,
            "nodes": [],
            "processes": [process(11, mine.pk), process(12, theirs.pk)],
            "throughput": [],
        }

    monkeypatch.setattr(workers, "cluster_state", busy_cluster)
    communicator = socket("/ws/overview/", await logged_in(alice))
    assert (await communicator.connect(timeout=5))[0]
    state = await communicator.receive_json_from(timeout=5)
    job_ids = {job["id"] for job in state["active"] + state["recent"]}
    job_ids |= {p["job_id"] for p in state["cluster"]["processes"]} - {None}
    assert job_ids == {mine.pk}
    other = state["cluster"]["processes"][1]
    assert other["other"] is True
    assert other["chunk_index"] is None
    await communicator.disconnect()
    page = await database_sync_to_async((await logged_in(alice)).get)("/")
    assert f'"job_id": {theirs.pk}' not in page.content.decode()


# --- staff standing on open sockets ------------------------------------------------------------


async def test_a_demoted_member_of_staff_sees_only_their_own_jobs_on_the_open_overview(
    alice: User, staff: User
) -> None:
    """Issue 21 probe 10: demoted staff kept staff visibility on sockets already open."""
    theirs = await create_job(alice)
    communicator = socket("/ws/overview/", await logged_in(staff))
    assert (await communicator.connect(timeout=5))[0]

    async def next_state() -> dict[str, Any]:
        while True:
            message: dict[str, Any] = await communicator.receive_json_from(timeout=5)
            if message["type"] == "overview.state":
                return message

    assert theirs.pk in [job["id"] for job in (await next_state())["active"]]

    @db_sync_to_async
    def demote() -> None:
        staff.is_staff = False
        staff.save(update_fields=["is_staff"])

    await demote()
    began = time.monotonic()
    while theirs.pk in [job["id"] for job in (await next_state())["active"]]:
        assert time.monotonic() - began < 5
    await communicator.disconnect()


async def test_a_promoted_person_keeps_their_job_socket_and_a_demoted_one_loses_others(
    alice: User, bob: User
) -> None:
    job = await create_job(alice)
    own = socket(f"/ws/jobs/{job.pk}/", await logged_in(alice))
    assert (await own.connect(timeout=5))[0]

    @db_sync_to_async
    def set_staff(user: User, *, is_staff: bool) -> None:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])

    await set_staff(bob, is_staff=True)
    watching = socket(f"/ws/jobs/{job.pk}/", await logged_in(bob))
    assert (await watching.connect(timeout=5))[0]
    await set_staff(alice, is_staff=True)  # a change that takes nothing away
    await set_staff(bob, is_staff=False)
    assert await closed_with(watching, timeout=5) == protocol.CLOSE_NOT_FOUND
    assert await closed_with(own, timeout=1.5) is None  # still open: the job is hers
    await own.disconnect()
