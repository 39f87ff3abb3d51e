"""`burn` under another name, for `make bench`: the live-latency figures run it on a worker
whose chunk processes keep the worker's CPU priority (COREBOARD_CHUNK_NICE=0) beside `burn`
on the main worker at the default priority, in the same rounds (a kind routes to its own
queue, so each job reaches only its own worker)."""

from __future__ import annotations

from jobs.kinds import register
from jobs.kinds.burn import Burn

NAME = "burn_nice_0"


@register
class BurnNiceZero(Burn):
    name = NAME
    label = "Burn CPU (bench: chunk processes not niced)"
