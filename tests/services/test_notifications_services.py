"""Notifications without worker processes: the outbox rows written with a job's final
state (once per hook or e-mail, job and event), one attempt at a real receiver on
127.0.0.1 (signature, delivery log, retries with backoff, final refusals), the backoff
schedule and the SSRF guard."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from coreconf import paths
from jobs import services
from jobs.engine import notify
from jobs.models import Job, NotificationDelivery, NotificationSettings, Webhook
from jobs.services import notifications
from jobs.services.errors import Rejected, TooMany
from tests.factories import fail_next, finish_job, make_job, start
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.services, pytest.mark.django_db]

SECRET = "s3cret-for-tests"


def docs_verify() -> Any:
    """docs/notifications.md's `coreboard_verify`, run as written."""
    text = (paths.BASE_DIR / "docs" / "notifications.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)  # noqa: S102 (the docs' own example)
    return namespace["coreboard_verify"]


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.COREBOARD_WEBHOOK_ALLOW_PRIVATE = True
    settings.COREBOARD_WEBHOOK_TIMEOUT_S = 5
    with webhook_receiver() as started:
        yield started


def wants(owner: User, **fields: Any) -> NotificationSettings:
    defaults = {"on_succeeded": True, "on_failed": True, "on_cancelled": True}
    return NotificationSettings.objects.create(owner=owner, **(defaults | fields))


def hook(owner: User, url: str = "https://hooks.example.org/x") -> Webhook:
    return Webhook.objects.create(owner=owner, url=url, secret=SECRET)


def test_a_finished_job_records_one_delivery_per_hook_and_email(alice: User) -> None:
    wants(alice, email="alice@example.org")
    first, second = hook(alice), hook(alice, "https://hooks.example.org/y")
    Webhook.objects.create(owner=alice, url="https://off.example.org/", secret="x", enabled=False)
    job = make_job(alice, chunks=2)
    finish_job(job)
    rows = NotificationDelivery.objects.filter(job=job)
    assert job.status == Job.Status.SUCCEEDED
    assert sorted((row.channel, row.webhook_id) for row in rows) == sorted(
        [("email", None), ("webhook", first.pk), ("webhook", second.pk)]
    )
    assert {row.event for row in rows} == {"succeeded"}
    assert {row.status for row in rows} == {"pending"}
    assert rows.get(channel="email").email == "alice@example.org"


def test_recording_the_same_end_again_records_nothing(alice: User) -> None:
    wants(alice, email="alice@example.org")
    hook(alice)
    job = make_job(alice, chunks=1)
    finish_job(job)
    assert NotificationDelivery.objects.filter(job=job).count() == 2
    assert notify.job_ended(job) == []
    assert NotificationDelivery.objects.filter(job=job).count() == 2


def test_only_the_events_chosen_are_recorded(alice: User) -> None:
    wants(alice, on_succeeded=False, on_failed=True, on_cancelled=False)
    hook(alice)
    failed = make_job(alice, chunks=2)
    start(failed)
    fail_next(failed)
    cancelled = make_job(alice, chunks=2)
    services.job_cancel(job=cancelled)
    succeeded = make_job(alice, chunks=1)
    finish_job(succeeded)
    events = NotificationDelivery.objects.values_list("job_id", "event")
    assert list(events) == [(failed.pk, "failed")]


def test_cancelling_records_the_cancelled_event(alice: User, bob: User) -> None:
    wants(alice)
    hook(alice)
    hook(bob)  # another person's hook hears nothing of alice's jobs
    job = make_job(alice, chunks=2)
    services.job_cancel(job=job)
    row = NotificationDelivery.objects.get()
    assert (row.job_id, row.event, row.owner_id) == (job.pk, "cancelled", alice.pk)


def test_only_jobs_longer_than_the_threshold_notify(alice: User) -> None:
    wants(alice, min_minutes=5)
    hook(alice)
    short = make_job(alice, chunks=1)
    finish_job(short)
    assert not NotificationDelivery.objects.exists()
    long = make_job(alice, chunks=1)
    finish_job(long)
    assert long.finished_at is not None
    Job.objects.filter(pk=long.pk).update(started_at=long.finished_at - timedelta(minutes=6))
    long.refresh_from_db()
    NotificationDelivery.objects.all().delete()
    assert len(notify.job_ended(long)) == 1


def test_a_retried_job_that_fails_again_is_a_new_event(alice: User) -> None:
    wants(alice)
    hook(alice)
    job = make_job(alice, chunks=2)
    start(job)
    fail_next(job)
    services.job_retry_failed(job=job)
    job.refresh_from_db()
    fail_next(job)
    assert NotificationDelivery.objects.filter(job=job, event="failed").count() == 2


# --- one attempt, against a real receiver ------------------------------------------------------


def delivery_to(receiver: Receiver, owner: User) -> NotificationDelivery:
    wants(owner)
    hook(owner, receiver.url)
    job = make_job(owner, chunks=1)
    finish_job(job)
    return NotificationDelivery.objects.get(job=job)


def test_a_delivery_is_a_signed_post_the_docs_snippet_verifies(
    alice: User, receiver: Receiver
) -> None:
    delivery = delivery_to(receiver, alice)
    assert notify.delivery_send(pk=delivery.pk) is None
    (post,) = receiver.posts
    verify = docs_verify()
    assert verify(SECRET, post.headers, post.body)
    assert not verify("another secret", post.headers, post.body)
    assert not verify(SECRET, post.headers, post.body + b" ")
    old = {
        **post.headers,
        "Coreboard-Timestamp": str(int(post.headers["Coreboard-Timestamp"]) - 3600),
    }
    assert not verify(SECRET, old, post.body)
    assert post.delivery_id == str(delivery.delivery_id)
    body = json.loads(post.body)
    assert body["job"]["id"] == delivery.job_id
    assert body["event"] == "succeeded"
    assert body["job"]["url"].endswith(f"/jobs/{delivery.job_id}/")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("sent", 1, 200)
    assert delivery.last_response == "answer 200"
    assert notify.delivery_send(pk=delivery.pk) is None  # settled: nothing sent again
    assert len(receiver.posts) == 1


def test_failures_are_retried_with_backoff_then_given_up(
    alice: User, receiver: Receiver, settings: Any
) -> None:
    settings.COREBOARD_NOTIFY_MAX_RETRIES = 1
    settings.COREBOARD_NOTIFY_RETRY_BASE_S = 30
    receiver.statuses[:] = [503, 500]
    delivery = delivery_to(receiver, alice)
    before = timezone.now()
    wait = notify.delivery_send(pk=delivery.pk)
    assert wait is not None
    assert 1 <= wait <= 30
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at >= before
    assert delivery.sending_until is None
    assert notify.delivery_send(pk=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 2, 500)
    assert [post.delivery_id for post in receiver.posts] == [str(delivery.delivery_id)] * 2


def test_a_4xx_answer_is_final(alice: User, receiver: Receiver) -> None:
    receiver.statuses[:] = [404]
    delivery = delivery_to(receiver, alice)
    assert notify.delivery_send(pk=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("failed", 404)


def test_a_delivery_held_by_another_attempt_is_not_sent_twice(
    alice: User, receiver: Receiver
) -> None:
    delivery = delivery_to(receiver, alice)
    held_until = timezone.now() + timedelta(seconds=20)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(sending_until=held_until)
    wait = notify.delivery_send(pk=delivery.pk)
    assert wait is not None
    assert 15 < wait <= 21
    assert receiver.posts == []


def test_the_answer_read_is_capped(alice: User, receiver: Receiver, settings: Any) -> None:
    settings.COREBOARD_WEBHOOK_RESPONSE_BYTES = 6
    delivery = delivery_to(receiver, alice)
    notify.delivery_send(pk=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.last_response == "answer"


def test_an_email_goes_through_djangos_mail_backend(alice: User) -> None:
    wants(alice, email="alice@example.org")
    job = make_job(alice, chunks=1)
    finish_job(job)
    delivery = NotificationDelivery.objects.get(job=job)
    assert notify.delivery_send(pk=delivery.pk) is None
    (message,) = mail.outbox
    assert message.to == ["alice@example.org"]
    assert f"job {job.pk}" in message.subject
    assert "succeeded" in message.subject


# --- backoff ----------------------------------------------------------------------------------


def test_the_backoff_doubles_up_to_its_cap_with_jitter(settings: Any) -> None:
    settings.COREBOARD_NOTIFY_RETRY_BASE_S = 10
    settings.COREBOARD_NOTIFY_RETRY_MAX_S = 100
    for attempts, bound in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (12, 100)]:
        delays = [notify.retry_delay(attempts) for _ in range(300)]
        assert all(1 <= delay <= bound for delay in delays), (attempts, max(delays))
        # Full jitter: spread over the range, not the bound every time.
        assert min(delays) < bound / 2 < max(delays)


# --- the SSRF guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://localhost/x",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "ftp://93.184.216.34/",
        "http://user:pw@93.184.216.34/",
        "http://93.184.216.34:99999/",
    ],
)
def test_the_guard_refuses_non_public_addresses(url: str) -> None:
    assert notify.url_refusal(url) is not None


def test_the_guard_allows_public_addresses_and_private_ones_when_the_operator_does(
    settings: Any,
) -> None:
    assert notify.url_refusal("https://93.184.216.34/hook") is None
    assert notify.url_refusal("http://[2606:2800:220:1:248:1893:25c8:1946]/") is None
    settings.COREBOARD_WEBHOOK_ALLOW_PRIVATE = True
    assert notify.url_refusal("http://127.0.0.1:8000/x") is None


def test_a_private_hook_is_refused_at_sending_too_and_not_retried(
    alice: User, settings: Any
) -> None:
    with webhook_receiver() as receiver:
        delivery = delivery_to(receiver, alice)  # saved while an operator allowed it
        settings.COREBOARD_WEBHOOK_ALLOW_PRIVATE = False
        assert notify.delivery_send(pk=delivery.pk) is None
        assert receiver.posts == []
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert "COREBOARD_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error


def test_making_a_hook_checks_its_url_and_the_limit(alice: User, settings: Any) -> None:
    with pytest.raises(Rejected) as refused:
        notifications.webhook_create(owner=alice, url="http://127.0.0.1/x")
    assert list(refused.value.errors) == ["url"]
    assert not Webhook.objects.exists()
    settings.COREBOARD_WEBHOOKS_PER_PERSON = 1
    made, secret = notifications.webhook_create(owner=alice, url="https://93.184.216.34/a")
    assert made.secret == secret
    assert len(secret) >= 40
    with pytest.raises(TooMany, match="COREBOARD_WEBHOOKS_PER_PERSON"):
        notifications.webhook_create(owner=alice, url="https://93.184.216.34/b")
    assert Webhook.objects.count() == 1


def test_send_test_queues_one_test_delivery_at_a_time(alice: User) -> None:
    made = hook(alice)
    delivery = notifications.webhook_test(hook=made)
    assert (delivery.event, delivery.job_id, delivery.status) == ("test", None, "pending")
    with pytest.raises(services.Conflict, match="still being sent"):
        notifications.webhook_test(hook=made)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(status="sent")
    with pytest.raises(services.Conflict, match="less than 10 seconds ago"):
        notifications.webhook_test(hook=made)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(seconds=notifications.TEST_INTERVAL_S + 1)
    )
    assert notifications.webhook_test(hook=made).pk != delivery.pk


def test_the_relay_resends_only_overdue_deliveries_nobody_holds(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(notify, "delivery_enqueue", lambda pk, countdown=None: sent.append(pk))
    made = hook(alice)
    now = timezone.now()
    old = now - timedelta(seconds=notify.RELAY_GRACE_S + 5)

    def row(**fields: Any) -> NotificationDelivery:
        return NotificationDelivery.objects.create(
            delivery_id=uuid.uuid4(),
            owner=alice,
            event="test",
            channel="webhook",
            webhook=made,
            **fields,
        )

    lost = row(next_attempt_at=old)
    row(next_attempt_at=now)  # due now: its message is on its way
    row(next_attempt_at=old, sending_until=now + timedelta(seconds=30))  # being sent
    row(next_attempt_at=old, status="sent")
    assert notify.deliveries_relay() == 1
    assert sent == [lost.pk]
    assert notify.deliveries_relay() == 0  # not again at every pass


@pytest.fixture
def trickler() -> Iterator[str]:
    """A receiver on 127.0.0.1 that answers one header byte at a time, forever (slowloris
    the other way round); its URL."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    server.close()
    thread.join(timeout=5)


def test_a_receiver_that_trickles_is_cut_off_within_the_lease(
    alice: User, trickler: str, settings: Any
) -> None:
    settings.COREBOARD_WEBHOOK_ALLOW_PRIVATE = True
    settings.COREBOARD_WEBHOOK_TIMEOUT_S = 1
    wants(alice)
    hook(alice, trickler)
    job = make_job(alice, chunks=1)
    finish_job(job)
    delivery = NotificationDelivery.objects.get(job=job)
    started = time.monotonic()
    assert notify.delivery_send(pk=delivery.pk) is not None  # retried later
    assert time.monotonic() - started < notify.lease_s("webhook")
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.last_error


def test_an_answer_with_nul_bytes_is_logged(alice: User, receiver: Receiver) -> None:
    delivery = delivery_to(receiver, alice)
    notify._delivery_settle(delivery, notify.Answer(status=200, body="a\x00b"), "", final=False)
    delivery.refresh_from_db()
    assert delivery.last_response == "a\ufffdb"
