"""What an operator does to a worker node: drain it (it finishes its running chunks and
takes no more) and resume it.

Celery's remote control does the routing part: `cancel_consumer` / `add_consumer` for
each queue the node consumes, so the broker stops (or starts again) handing it messages.
The node's drain flag in the worker registry (jobs.engine.workers) makes its running
slots stop after their current chunks and hand their messages back to the queue, where
other nodes take them. The flag is kept in Redis, so it is shown on every page and
survives reloads; a node that restarts comes up active.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kombu.exceptions
import redis
from celery import current_app
from django.conf import settings

from jobs.engine import workers

# How long to wait for the node to confirm a consumer change.
CONTROL_REPLY_TIMEOUT_S = 2.0


class UnknownNode(LookupError):
    """No live node has this name."""


@dataclass(frozen=True)
class NodeControlResult:
    node: str
    draining: bool
    queues: list[str]
    # Queues whose change the node did not confirm in time (it may be busy or gone).
    unconfirmed: list[str] = field(default_factory=list)
    # A drain: no process of the node was still claiming once it was confirmed, so it
    # claims nothing more (False: some still were after CONTROL_REPLY_TIMEOUT_S).
    claims_settled: bool = True


def _on_a_live_connection(change: Callable[..., Any], queue: str, node: str) -> Any:
    """Send a consumer change to the node, once more on a connection of its own if the
    pooled one is dead (a Redis restart or `CLIENT KILL` closed it: kombu's remote control
    does not reconnect by itself)."""
    ask = {"destination": [node], "reply": True, "timeout": CONTROL_REPLY_TIMEOUT_S}
    try:
        return change(queue, **ask)
    except (redis.ConnectionError, kombu.exceptions.OperationalError):
        with current_app.connection_for_write() as connection:
            return change(queue, connection=connection, **ask)


def node_drain(*, node: str, draining: bool) -> NodeControlResult:
    """Drain `node` (draining=True) or make it take work again; raises UnknownNode when no
    live node has that name."""
    entry = workers.node_get(node)
    if entry is None or entry["lost"]:
        raise UnknownNode(node)
    queues = entry["queues"] or [settings.CELERY_TASK_DEFAULT_QUEUE]
    control = current_app.control
    change = control.cancel_consumer if draining else control.add_consumer
    unconfirmed = []
    for queue in queues:
        replies = _on_a_live_connection(change, queue, node)
        if not any(node in reply for reply in replies or []):
            unconfirmed.append(queue)
    # After the consumers changed: a slot the drain gives back is not handed straight back
    # to this node, and a resumed node's slots claim again once it consumes.
    workers.node_draining_set(node, draining="drain" if draining else None)
    # Claims already permitted finish (one transaction each); every later one is refused.
    settled = not draining or workers.claims_settled(node, timeout_s=CONTROL_REPLY_TIMEOUT_S)
    workers.changed_publish()
    return NodeControlResult(
        node=node,
        draining=draining,
        queues=queues,
        unconfirmed=unconfirmed,
        claims_settled=settled,
    )
