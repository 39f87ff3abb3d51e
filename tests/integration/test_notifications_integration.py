"""The must-show of issue 23 item 1, with a real prefork worker and a real receiver on
127.0.0.1: exactly one signed POST per finished job, also when the worker process sending
it is killed (SIGKILL) while the receiver holds the request open; failures retried with
backoff and visible in the delivery log.

"Exactly one" is per delivery id: delivery is at least once (docs/decisions.md, "Issue 23:
notifications"), so a POST the killed process sent is sent again with the same
`Coreboard-Delivery`, which the receiver de-duplicates; the test asserts both that the
redelivery happened and that it carried the same id.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from django.contrib.auth.models import User

from jobs.models import Job, NotificationDelivery, NotificationSettings, Webhook
from tests.factories import make_job
from tests.processes import ServerProcess
from tests.services.test_notifications_services import docs_verify
from tests.waiting import poll_until, wait_for_job
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRET = "integration-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as started:
        yield started


@pytest.fixture
def alice_hooked(alice: User, receiver: Receiver) -> Webhook:
    NotificationSettings.objects.create(
        owner=alice, on_succeeded=True, on_failed=True, on_cancelled=True
    )
    return Webhook.objects.create(owner=alice, url=receiver.url, secret=SECRET)


def finished_job(owner: User) -> Job:
    job = make_job(owner, committed=True, chunks=1, ms=1, parallelism=1)
    return wait_for_job(job.pk, until={"succeeded", "failed", "cancelled"})


def settled(delivery: NotificationDelivery) -> NotificationDelivery:
    def check() -> NotificationDelivery | None:
        delivery.refresh_from_db()
        return delivery if delivery.status != "pending" else None

    return poll_until(check, timeout=90)


def test_one_signed_post_per_job_even_when_the_sender_is_killed_mid_delivery(
    celery_worker: ServerProcess, alice: User, alice_hooked: Webhook, receiver: Receiver
) -> None:
    receiver.hold_posts.add(1)
    job = finished_job(alice)
    assert job.status == Job.Status.SUCCEEDED
    assert receiver.holding.wait(timeout=60), "the first POST never came"
    delivery = NotificationDelivery.objects.get(job=job)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    sender = delivery.sending_pid
    assert sender is not None
    assert sender in {child.pid for child in celery_worker.children()}
    os.kill(sender, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(sender).wait(timeout=30)
    receiver.release.set()  # the held request now answers a sender that is gone

    posts = receiver.wait_for(2, timeout=90)
    delivery = settled(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("sent", 2, 200)
    assert delivery.sending_pid != sender  # a fresh pool process sent it again
    # Redelivered once, with the same id: one unique delivery for the one finished job.
    assert [post.delivery_id for post in posts] == [str(delivery.delivery_id)] * 2
    verify = docs_verify()
    for post in posts:
        assert verify(SECRET, post.headers, post.body)
        assert json.loads(post.body)["job"]["id"] == job.pk

    # A second job: one more delivery id, one POST, nothing more for the first.
    second = finished_job(alice)
    receiver.wait_for(3, timeout=60)
    settled(NotificationDelivery.objects.get(job=second))
    assert len(receiver.unique_ids()) == 2
    assert len(receiver.posts) == 3
    assert NotificationDelivery.objects.filter(status="sent").count() == 2


def test_failures_are_retried_with_backoff_and_shown_in_the_delivery_log(
    celery_worker: ServerProcess,
    alice: User,
    alice_hooked: Webhook,
    receiver: Receiver,
    alice_client: Any,
) -> None:
    receiver.statuses[:] = [500, 503]
    receiver.hold_posts.add(2)
    job = finished_job(alice)
    assert receiver.holding.wait(timeout=60), "no retry came"
    delivery = NotificationDelivery.objects.get(job=job)
    # The log after the first failure, while the second attempt is held open.
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    assert delivery.last_status_code == 500
    assert delivery.last_response == "answer 500"
    assert delivery.next_attempt_at is not None
    receiver.release.set()
    posts = receiver.wait_for(3, timeout=60)
    delivery = settled(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("sent", 3, 200)
    assert len(receiver.unique_ids()) == 1
    # Backoff: each retry waited at least the one-second floor of the jittered delay.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(posts)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    page = alice_client.get("/notifications/").content.decode()
    assert str(delivery.delivery_id) in page
    assert ">3<" in page.replace(" ", "")  # attempts
