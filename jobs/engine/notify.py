"""Notifications when a job ends: the outbox and its sending by a worker.

`job_ended` runs in the transaction that writes a job's final state (the one place per
way a job ends: jobs.engine.job_state, jobs.engine.chunks, jobs.services.jobs.job_cancel)
and writes one NotificationDelivery row per channel the owner chose, at most one per
(webhook or e-mail, job, event) by the table's unique constraints; once it commits, a
Celery task per row is sent (jobs.engine.tasks.notification_deliver). So a notification
exists if and only if the final state does, and nothing is sent in the request path.

Delivery is at least once: a process killed after the receiver got the POST but before
the row says `sent` sends it again, with the same `Coreboard-Delivery` id, which the
receiver uses to drop the duplicate (docs/decisions.md, "Issue 23: notifications"). Two
messages for one delivery never send at once: an attempt holds the row for a lease.

Webhooks get a JSON body signed with HMAC-SHA256 over `<timestamp>.<body>` with the hook's
secret. Their URLs are checked against SSRF (`url_refusal`): only public addresses, unless
COREBOARD_WEBHOOK_ALLOW_PRIVATE; the address checked is the one connected to (no second
lookup that a DNS answer could change), no redirect is followed, the answer read is capped.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from celery import current_app
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs.models import Job, NotificationDelivery, NotificationSettings, Webhook

logger = logging.getLogger(__name__)

DELIVER_TASK = "jobs.tasks.notification_deliver"
EVENTS = (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED)
# Answers worth another try: the receiver is down or busy. Any other 4xx is final.
RETRY_STATUSES = frozenset({408, 425, 429})
# An overdue pending delivery (its task message lost: a broker restart, a commit whose
# enqueue failed) is sent again by the reconciler this long after it was due.
RELAY_GRACE_S = 120
SIGNATURE_HEADER = "Coreboard-Signature"
TIMESTAMP_HEADER = "Coreboard-Timestamp"
DELIVERY_HEADER = "Coreboard-Delivery"
EVENT_HEADER = "Coreboard-Event"
USER_AGENT = "Coreboard-Webhook/1"


# --- the outbox ----------------------------------------------------------------------------


def job_ended(job: Job) -> list[int]:
    """Record the notifications of `job`, whose final state the current transaction writes,
    and send them after it commits; the ids of the rows recorded (none twice: a second
    call for the same event records nothing)."""
    if job.status not in EVENTS:
        return []
    prefs = NotificationSettings.objects.filter(owner_id=job.owner_id).first()
    if prefs is None or not prefs.wants(job.status) or not job_long_enough(job, prefs):
        return []
    rows = []
    if prefs.email:
        rows.append(_delivery(job, channel=NotificationDelivery.Channel.EMAIL, email=prefs.email))
    for hook in Webhook.objects.filter(owner_id=job.owner_id, enabled=True):
        rows.append(_delivery(job, channel=NotificationDelivery.Channel.WEBHOOK, webhook=hook))
    if not rows:
        return []
    NotificationDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(
        NotificationDelivery.objects.filter(
            delivery_id__in=[row.delivery_id for row in rows]
        ).values_list("pk", flat=True)
    )
    deliveries_enqueue_after_commit(ids)
    return ids


def job_long_enough(job: Job, prefs: NotificationSettings) -> bool:
    """Whether the job ran longer than the person's threshold (a job that never started
    ran 0 s)."""
    if not prefs.min_minutes:
        return True
    return (job.wall_seconds or 0.0) > prefs.min_minutes * 60


def _delivery(job: Job, **fields: Any) -> NotificationDelivery:
    return NotificationDelivery(
        delivery_id=uuid.uuid4(),
        owner_id=job.owner_id,
        job=job,
        event=job.status,
        job_finished_at=job.finished_at,
        next_attempt_at=timezone.now(),
        **fields,
    )


def delivery_test_record(*, hook: Webhook) -> NotificationDelivery:
    """A test POST to `hook` (the settings page's "send test"), sent by a worker."""
    delivery = NotificationDelivery.objects.create(
        delivery_id=uuid.uuid4(),
        owner_id=hook.owner_id,
        event=NotificationDelivery.Event.TEST,
        channel=NotificationDelivery.Channel.WEBHOOK,
        webhook=hook,
        next_attempt_at=timezone.now(),
    )
    deliveries_enqueue_after_commit([delivery.pk])
    return delivery


def deliveries_enqueue_after_commit(ids: list[int]) -> None:
    for pk in ids:
        transaction.on_commit(partial(delivery_enqueue, pk), robust=True)


def delivery_enqueue(pk: int, countdown: float | None = None) -> None:
    current_app.send_task(DELIVER_TASK, args=[pk], countdown=countdown)


def deliveries_relay() -> int:
    """Send again the task of each pending delivery overdue by RELAY_GRACE_S and held by
    nobody (its message was lost); how many. A duplicate message is harmless: an attempt
    holds the row, and a settled row is not sent again."""
    now = timezone.now()
    overdue = list(
        NotificationDelivery.objects.filter(
            status=NotificationDelivery.Status.PENDING,
            next_attempt_at__lt=now - timedelta(seconds=RELAY_GRACE_S),
        )
        .filter(Q(sending_until__isnull=True) | Q(sending_until__lt=now))
        .values_list("pk", flat=True)[:1000]
    )
    if overdue:
        NotificationDelivery.objects.filter(pk__in=overdue).update(next_attempt_at=now)
        for pk in overdue:
            delivery_enqueue(pk)
    return len(overdue)


# --- sending -------------------------------------------------------------------------------


class DeliveryError(Exception):
    """The receiver could not be reached or did not answer in time (worth a retry)."""


class URLRefused(Exception):
    """A webhook URL the SSRF guard refuses."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt of a delivery that failed `attempts` times: Celery's
    exponential backoff (base COREBOARD_NOTIFY_RETRY_BASE_S, doubled per failure, capped at
    COREBOARD_NOTIFY_RETRY_MAX_S) with full jitter, never under one second."""
    return max(
        1.0,
        float(
            get_exponential_backoff_interval(
                factor=settings.COREBOARD_NOTIFY_RETRY_BASE_S,
                retries=max(attempts - 1, 0),
                maximum=settings.COREBOARD_NOTIFY_RETRY_MAX_S,
                full_jitter=True,
            )
        ),
    )


def lease_s(channel: str) -> float:
    """How long one attempt may hold its delivery: twice the channel's timeout (to connect,
    then for the answer), plus a margin."""
    if channel == NotificationDelivery.Channel.EMAIL:
        return 2 * settings.EMAIL_TIMEOUT + 5
    return 2 * settings.COREBOARD_WEBHOOK_TIMEOUT_S + 5


def delivery_send(*, pk: int) -> float | None:
    """One attempt at delivery `pk`; the seconds until it should be tried again, or None
    once it is settled (sent, given up, gone). The attempt, its answer and the next retry
    are written to the delivery log."""
    now = timezone.now()
    pending = NotificationDelivery.objects.filter(pk=pk, status=NotificationDelivery.Status.PENDING)
    channel = pending.values_list("channel", flat=True).first()
    if channel is None:
        return None
    claimed = pending.filter(Q(sending_until__isnull=True) | Q(sending_until__lt=now)).update(
        sending_until=now + timedelta(seconds=lease_s(channel)),
        sending_pid=os.getpid(),
        attempts=F("attempts") + 1,
        last_attempt_at=now,
    )
    if not claimed:
        held = pending.values_list("sending_until", flat=True).first()
        if held is None:
            return None
        # Another attempt holds it (or held it, and its process died): after its lease.
        return max((held - now).total_seconds(), 0.0) + 1.0
    delivery = NotificationDelivery.objects.select_related("webhook", "job").filter(pk=pk).first()
    if delivery is None:
        return None  # deleted meanwhile (its hook, its job or its owner)
    answer: Answer | None = None
    error = ""
    final = False
    try:
        answer = _deliver(delivery)
    except DeliveryError as failure:
        error = str(failure)
    except URLRefused as refusal:
        error, final = str(refusal), True
    return _delivery_settle(delivery, answer, error, final=final)


def _delivery_settle(
    delivery: NotificationDelivery, answer: Answer | None, error: str, *, final: bool
) -> float | None:
    retry: float | None = None
    if answer is not None and 200 <= answer.status < 300:
        status = NotificationDelivery.Status.SENT
    elif (
        not final
        and worth_retrying(answer)
        and delivery.attempts <= settings.COREBOARD_NOTIFY_MAX_RETRIES
    ):
        status = NotificationDelivery.Status.PENDING
        retry = retry_delay(delivery.attempts)
    else:
        status = NotificationDelivery.Status.FAILED
    now = timezone.now()
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        status=status,
        sending_until=None,
        next_attempt_at=now + timedelta(seconds=retry) if retry is not None else None,
        last_status_code=answer.status if answer is not None else None,
        last_response=_storable(answer.body) if answer is not None else "",
        last_error=_storable(error)[:2000],
    )
    return retry


def _storable(text: str) -> str:
    """Text PostgreSQL can store (no NUL), whatever a receiver answered."""
    return text.replace("\x00", "\ufffd")


def worth_retrying(answer: Answer | None) -> bool:
    """No answer (a network error, a timeout), a 5xx, 408, 425 or 429: try again."""
    return answer is None or answer.status >= 500 or answer.status in RETRY_STATUSES


def _deliver(delivery: NotificationDelivery) -> Answer:
    if delivery.channel == NotificationDelivery.Channel.EMAIL:
        return _email_send(delivery)
    hook = delivery.webhook
    if hook is None:
        raise URLRefused("the webhook was deleted")
    body = json.dumps(delivery_payload(delivery), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: str(delivery.delivery_id),
        EVENT_HEADER: delivery.event,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(hook.secret, timestamp, body),
    }
    return webhook_post(hook.url, body, headers)


def _email_send(delivery: NotificationDelivery) -> Answer:
    payload = delivery_payload(delivery)
    job = payload["job"] or {}
    subject = f"Coreboard: job {job.get('id')} ({job.get('kind')}) {delivery.event}"
    lines = [f"{key}: {value}" for key, value in job.items() if value is not None]
    try:
        send_mail(subject, "\n".join(lines), None, [delivery.email])
    except (OSError, ValueError) as failure:  # smtplib's errors are OSErrors
        raise DeliveryError(f"e-mail: {failure}") from failure
    return Answer(status=250, body="")


def delivery_payload(delivery: NotificationDelivery) -> dict[str, Any]:
    """The JSON body of a webhook POST (and the lines of an e-mail)."""
    return {
        "delivery_id": str(delivery.delivery_id),
        "event": delivery.event,
        "job": job_payload(delivery.job) if delivery.job is not None else None,
    }


def job_payload(job: Job) -> dict[str, Any]:
    def at(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "created_at": at(job.created_at),
        "started_at": at(job.started_at),
        "finished_at": at(job.finished_at),
        "wall_seconds": job.wall_seconds,
        "cpu_seconds": job.cpu_seconds,
        "speedup": job.speedup,
        "total_chunks": job.total_chunks,
        "done_chunks": job.done_chunks,
        "failed_chunks": job.failed_chunks,
        "url": f"{settings.COREBOARD_PUBLIC_URL}/jobs/{job.pk}/",
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the hook's secret over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


# --- the SSRF guard and the POST -------------------------------------------------------------


def url_refusal(url: str) -> str | None:
    """Why a webhook URL is refused (None: allowed): not http(s), credentials in it, or a
    host that is or resolves to a non-public address (unless COREBOARD_WEBHOOK_ALLOW_PRIVATE)."""
    try:
        _url_addresses(url)
    except URLRefused as refusal:
        return str(refusal)
    except DeliveryError:
        return None  # does not resolve now: checked again at each attempt
    return None


def address_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _url_addresses(url: str) -> tuple[urllib.parse.SplitResult, list[str]]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused("only http:// and https:// URLs with a host")
    if parts.username or parts.password:
        raise URLRefused("no credentials in the URL (use the signature)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise URLRefused(f"{error}") from error
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DeliveryError(f"{parts.hostname} does not resolve: {error}") from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not settings.COREBOARD_WEBHOOK_ALLOW_PRIVATE:
        private = [address for address in addresses if not address_public(address)]
        if private:
            raise URLRefused(
                f"{parts.hostname} is a loopback, private or reserved "
                f"address ({', '.join(private)}); an operator may allow those with "
                "COREBOARD_WEBHOOK_ALLOW_PRIVATE"
            )
    return parts, addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address the guard checked, not to a second lookup of the name."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def webhook_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to `url` once: no redirect followed, COREBOARD_WEBHOOK_TIMEOUT_S for
    each socket operation and twice that for the whole exchange (a receiver that trickles
    its answer is cut off, within the attempt's lease), at most
    COREBOARD_WEBHOOK_RESPONSE_BYTES read."""
    parts, addresses = _url_addresses(url)
    timeout = float(settings.COREBOARD_WEBHOOK_TIMEOUT_S)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    make = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = make(parts.hostname or "", port, address=addresses[0], timeout=timeout)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    deadline = time.monotonic() + 2 * timeout
    watchdog = threading.Timer(2 * timeout, _cut_off, args=(connection,))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        cap = settings.COREBOARD_WEBHOOK_RESPONSE_BYTES
        data = b""
        while len(data) < cap and time.monotonic() < deadline:
            piece = response.read1(min(cap - len(data), 65536))
            if not piece:
                break
            data += piece
        return Answer(status=response.status, body=data.decode("utf-8", "replace"))
    except http.client.InvalidURL as error:
        raise URLRefused(str(error)) from error
    except (OSError, http.client.HTTPException) as error:
        raise DeliveryError(f"{type(error).__name__}: {error}") from error
    finally:
        watchdog.cancel()
        connection.close()


def _cut_off(connection: http.client.HTTPConnection) -> None:
    """Past the exchange's deadline: unblock the read by shutting the socket down."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
