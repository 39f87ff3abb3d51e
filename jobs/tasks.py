"""Celery adapters: an id in, a service call; delivery and retry policy, no business rules."""

from __future__ import annotations

from celery import Task, shared_task, signals
from django.conf import settings
from django.db import InterfaceError, OperationalError

from jobs import cluster, services

RETRY_BACKOFF_BASE_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=settings.COREBOARD_CHUNK_MAX_RETRIES,
    # A database blip is not the chunk's fault: Celery retries the whole delivery.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
)
def chunk_run(self: Task, chunk_id: int) -> None:
    try:
        services.chunk_run(chunk_id=chunk_id)
    except services.ChunkFailed as failure:
        if self.request.retries < settings.COREBOARD_CHUNK_MAX_RETRIES:
            services.chunk_retry_scheduled(chunk_id=chunk_id, error=failure.error)
            countdown = min(RETRY_BACKOFF_BASE_S * 2**self.request.retries, RETRY_BACKOFF_MAX_S)
            raise self.retry(countdown=countdown, exc=failure) from None
        services.chunk_fail(chunk_id=chunk_id, error=failure.error)


@signals.worker_process_init.connect
def start_process_heartbeat(**kwargs: object) -> None:
    """Each prefork child reports itself (idle/busy, current chunk) once a second."""
    cluster.start_heartbeat()


@signals.worker_ready.connect
def start_cpu_sampler(**kwargs: object) -> None:
    """Each worker machine's main process samples per-core CPU use once a second."""
    cluster.start_node_sampler()


@signals.worker_process_shutdown.connect
def forget_process(**kwargs: object) -> None:
    cluster.process_forget()


@signals.worker_shutdown.connect
def forget_node(**kwargs: object) -> None:
    cluster.node_forget()
