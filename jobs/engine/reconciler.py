"""The reconciler: one thread in every worker's main process, one of them at a time (a
Redis lock) doing a pass every COREBOARD_RECONCILE_MS.

A pass returns expired leases to pending, finishes jobs with nothing left to run, moves
scaling studies to their next run, tops up the slots of active jobs and raises the priority
of slots that waited too long (jobs.engine.dispatch), so a lost message or machine costs
seconds, not a stuck job.
Every machine's thread also hands back at once the chunks of its own processes that are
gone (a killed prefork child), without waiting for their leases to expire.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from jobs.engine import notify, redis_clients, signals, workers
from jobs.engine.chunks import jobs_finish_idle, leases_reap, leases_release
from jobs.engine.dispatch import jobs_top_up, slots_age
from jobs.engine.slot_registry import registries_sweep
from jobs.models import Chunk, Job

logger = logging.getLogger(__name__)

RECONCILER_LOCK = "coreboard:reconciler"


def reconcile() -> int:
    """One pass: expired leases back to pending, jobs with nothing left to run finished
    (a retried combine), scaling studies moved to their next run, notifications whose task
    message was lost sent again (jobs.engine.notify), missing slots sent, slots that waited
    COREBOARD_PRIORITY_AGING_S raised a step, the slot registries of ended jobs removed; the
    number of slots sent."""
    leases_reap()
    jobs_finish_idle()
    signals.reconciler_pass.send(sender=None)
    notify.deliveries_relay()
    active = list(Job.objects.filter(status__in=Job.ACTIVE_STATUSES).values_list("pk", flat=True))
    sent = jobs_top_up(active)
    slots_age(active)
    registries_sweep(active=active)
    return sent


def leases_release_local() -> None:
    """Hand back at once the chunks of this machine's worker processes that are gone
    (a killed prefork child), instead of waiting for their leases to expire."""
    processes = (
        Chunk.objects.filter(
            status=Chunk.Status.RUNNING, lease_owner__endswith=f"|{workers.boot_id()}"
        )
        .values_list("lease_owner", flat=True)
        .distinct()
    )
    for process in list(processes):
        if workers.process_is_gone(process):
            leases_release(process=process)


def start_reconciler(node: str) -> None:
    """In each worker's main process: hand back lost local chunks, and reconcile (one
    machine at a time) every COREBOARD_RECONCILE_MS."""
    period = settings.COREBOARD_RECONCILE_MS / 1000

    def run() -> None:
        while True:
            began = time.monotonic()
            try:
                close_old_connections()
                with connection.cursor() as cursor:
                    # Housekeeping never waits long for a lock: whatever holds one (a slot
                    # recording its batch, a TRUNCATE) goes first, and the next pass retries.
                    cursor.execute("SET lock_timeout = '250ms'")
                leases_release_local()
                lock = redis_clients.broker().set(
                    RECONCILER_LOCK, node, nx=True, px=max(int(period * 900), 100)
                )
                if lock:
                    reconcile()
            except (redis.RedisError, OSError, DatabaseError) as error:
                logger.warning("reconciler: %s", error)
                connection.close()
            except Exception:
                logger.exception("reconciler pass failed")
            time.sleep(max(period - (time.monotonic() - began), 0.05))

    threading.Thread(target=run, name="coreboard-reconciler", daemon=True).start()
