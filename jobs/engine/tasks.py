"""Celery adapters: ids in, a service call; delivery policy and telemetry, no business rules."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from billiard.process import current_process
from celery import Task, shared_task, signals
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection

from jobs.engine import (
    dispatch,
    live,
    notify,
    output,
    reconciler,
    resources,
    slot_registry,
    slots,
    stopper,
    workers,
)
from jobs.engine import preflight as worker_preflight

logger = logging.getLogger(__name__)


# The worker's node name (`-n name@host`), known in the main process before it forks the
# pool, so every child inherits it.
class _Node:
    name = ""
    concurrency = 1
    # The kinds it runs and the queues it consumes (set before the pool forks); None in a
    # process that is not a worker: every registered kind, the default queue.
    kinds: frozenset[str] | None = None
    queues: tuple[str, ...] = ()


TELEMETRY = slots.SlotHooks(
    chunk_started=live.process_running,
    chunk_finished=live.chunk_finished,
    idle=live.process_idle,
)


# A notification (jobs.engine.notify): acknowledged after it ran and redelivered when its
# process dies (kill -9 mid-POST), so it is sent at least once; its row says whether it is
# settled, so a redelivered or duplicate message sends nothing twice once it is recorded.
# Retries are Celery's own (`self.retry`, a countdown from Celery's exponential backoff
# with jitter); their count and cap live in the delivery's row, which survives a lost
# message, not in the message.
@shared_task(
    name=notify.DELIVER_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def notification_deliver(self: Task[[int], str], delivery_pk: int) -> str:
    """One attempt at a notification; a retry after its backoff when it failed."""
    wait = notify.delivery_send(pk=delivery_pk)
    if wait is None:
        return "settled"
    raise self.retry(countdown=wait)


# Acknowledged after it ran, and redelivered when its process dies (kill -9, OOM): a lost
# slot comes back rather than leaving its job short of a process. Results go to
# PostgreSQL, so no result backend.
@shared_task(
    name=slot_registry.SLOT_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def slot_run(self: Task[[int, str], str], job_id: int, token: str) -> str:
    """One execution slot of a job (jobs.engine.slots).

    A database or broker error ends the slot without touching any chunk's retry budget:
    its leases expire or are handed back, and the reconciler sends a new slot once the
    service answers again.
    """
    node = _Node.name or self.request.hostname or ""
    delivery = self.request.delivery_info or {}
    # The message priority it was sent with (a job's, or raised by aging).
    priority = delivery.get("priority")
    try:
        if workers.node_is_draining(node):
            # Reserved before an operator drained this node: back to the queue it came
            # from, unrun, at the priority it came with, so a draining node takes no more
            # chunks.
            queue = delivery.get("routing_key") or settings.CELERY_TASK_DEFAULT_QUEUE
            slot_registry.slot_requeue(
                job_id,
                token,
                queue,
                priority=dispatch.NORMAL_BROKER_PRIORITY if priority is None else int(priority),
            )
            return "requeued"
        return slots.slot_run(
            job_id=job_id,
            token=token,
            node=node,
            hooks=TELEMETRY,
            worker_kinds=_Node.kinds,
            queues=_Node.queues,
            priority=None if priority is None else int(priority),
        )
    except DatabaseError as error:
        connection.close()
        logger.warning("slot of job %s stopped by a database error: %s", job_id, error)
        return "database-error"


@signals.celeryd_init.connect
def remember_node(sender: str | None = None, instance: Any = None, **kwargs: Any) -> None:
    """Take the node name (its lease in the worker registry) before Celery uses it: one
    that another machine's worker holds becomes `name-2` here, for Celery too (its remote
    control addresses the node by it), since Celery reads the worker's hostname only
    after this signal."""
    wanted = sender or ""
    name = worker_preflight.node_name_take(wanted) if wanted else ""
    if instance is not None and name != wanted:
        instance.hostname = name
    _Node.name = name
    workers.this_node_set(name, renamed_from=wanted if name != wanted else "")


@signals.worker_init.connect
def consume_kind_queues(sender: Any = None, **kwargs: object) -> None:
    """The worker consumes the queues of the kinds it has, on top of its default queue or
    the ones given with -Q (after Celery selected those), and remembers both."""
    try:
        _Node.kinds = workers.worker_kinds()
    except ImproperlyConfigured as error:
        # Celery logs and swallows exceptions from signal handlers; this one must stop it.
        raise SystemExit(f"coreboard worker: {error}") from None
    queues = sender.app.amqp.queues
    for name in dispatch.worker_kind_queues(_Node.kinds):
        queues.select_add(name)
    _Node.queues = tuple(sorted(queues.consume_from))


@signals.worker_init.connect
def stop_board(**kwargs: object) -> None:
    """The shared board on which pool children say which chunk they run, made before the
    pool forks them (jobs.engine.stopper)."""
    stopper.board_create()


@signals.worker_init.connect
def preflight(sender: Any = None, **kwargs: Any) -> None:
    """Refuse to start on a schema, MEDIA_ROOT, node name or clock that does not fit."""
    worker_preflight.worker_preflight(_Node.name or getattr(sender, "hostname", "") or "")


@signals.after_setup_logger.connect
def log_chunk_context(**kwargs: Any) -> None:
    """The worker's log lines name the job and chunk running in their process
    (` job=12 chunk=3`, the `chunk_context` of CELERY_WORKER_LOG_FORMAT)."""
    output.log_context_install()


@signals.task_received.connect
def slot_reserved(request: Any = None, **kwargs: Any) -> None:
    """A worker reserved a slot's message: it is alive while that worker beats."""
    if request is None or request.name != slot_registry.SLOT_TASK:
        return
    try:
        job_id, token = request.args
        slot_registry.slot_reserved(int(job_id), str(token), _Node.name)
    except Exception:
        logger.warning("could not mark a slot reserved", exc_info=True)


def chunk_priority_lower(niceness: int) -> None:
    """Lower this process's CPU priority by `niceness` (0: leave it alone).

    Called first in a prefork child, while its main thread is its only thread: Linux keeps
    a nice value per thread and a new thread inherits its creator's, so every thread the
    child starts afterwards (heartbeat, keepalive, publisher, output, sampler) runs at the
    child's priority, and a subprocess a kind starts does too. The worker's main process
    (stopper, reconciler, pool) keeps its own. No privilege is needed to lower a priority.
    """
    if niceness <= 0:
        return
    try:
        os.nice(niceness)
    except OSError as error:
        logger.warning("could not lower the chunk process's CPU priority: %s", error)


@signals.worker_process_init.connect
def start_process_heartbeat(**kwargs: object) -> None:
    """Each prefork child runs at the chunks' lower CPU priority (COREBOARD_CHUNK_NICE),
    reports itself (idle/busy, current chunk) once a second, and takes its entry on the
    stop board (its billiard index)."""
    chunk_priority_lower(settings.COREBOARD_CHUNK_NICE)
    live.start_heartbeat()
    stopper.child_init(slot=getattr(current_process(), "index", None))


@signals.worker_ready.connect
def start_main_process_threads(sender: Any = None, **kwargs: object) -> None:
    """Each worker's main process publishes its node (info, per-core CPU use), runs the
    reconciler, and samples its pool children's CPU and memory while they run chunks."""
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None) or 1
    _Node.concurrency = int(concurrency)
    app = getattr(sender, "app", None)
    queues = list(app.amqp.queues.consume_from) if app is not None else []
    node_kinds = workers.worker_kinds() if _Node.kinds is None else _Node.kinds
    live.start_node_sampler(
        info=workers.node_info(concurrency=_Node.concurrency, queues=queues, node_kinds=node_kinds),
        on_displaced=_stop_displaced,
    )
    reconciler.start_reconciler(_Node.name)
    resources.start_process_sampler(_Node.name, stopper.board_busy)
    controller = getattr(sender, "controller", None)
    hub = getattr(controller, "hub", None)
    maintain = getattr(getattr(controller, "pool", None), "maintain_pool", None)

    def pool_replace_children() -> None:
        # The pool's own maintenance (fork replacements for exited children), run on the
        # worker's event loop (kombu's call_soon wakes it from any thread).
        if hub is not None and callable(maintain):
            hub.call_soon(maintain)

    stopper.start_stopper(_Node.name, on_child_gone=pool_replace_children)


def _stop_displaced(holder: str) -> None:
    # A cold shutdown: a warm one would let its slots claim on under a name (and a drain
    # flag) that is another worker's now. Their chunks' leases lapse and run elsewhere.
    os.kill(os.getpid(), signal.SIGQUIT)


@signals.worker_shutting_down.connect
def drain(**kwargs: object) -> None:
    """Warm shutdown: running slots give their processes back after their current chunk."""
    live.node_stopping()


@signals.worker_process_shutdown.connect
def forget_process(**kwargs: object) -> None:
    live.process_forget()


@signals.worker_shutdown.connect
def forget_node(**kwargs: object) -> None:
    """The main process removes its node and every process of it (a clean stop is not a
    loss), after the pool has stopped."""
    live.node_forget()
