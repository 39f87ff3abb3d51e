"""`burn` under another name, for `make bench`: the fine-chunk figures run it on workers
with COREBOARD_CHUNK_CAPTURE=0 beside `burn` on workers with capture on, in the same
rounds (a kind routes to its own queue, so each job reaches only its own workers)."""

from __future__ import annotations

from jobs.kinds import register
from jobs.kinds.burn import Burn

NAME = "burn_capture_off"


@register
class BurnCaptureOff(Burn):
    name = NAME
    label = "Burn CPU (bench: capture off)"
