"""What the engine announces to the layers above it, which it must not import.

The engine runs jobs; what else should happen when a job ends, or on each reconciler
pass, belongs to those who care (today the scaling studies, jobs.services.studies). They
connect here in jobs.apps.JobsConfig.ready(), so the arrows point down: a service knows
the engine, the engine knows only these signals.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent (sender: Job) once a job's end, succeeded or failed, has committed, with `job_id`
# and `study_id` (None unless the job is a scaling study's run). The sender is a worker
# recording chunks, which commits first: a receiver that raises is logged and skipped.
job_finished = Signal()

# Sent (sender: None) on each reconciler pass, after expired leases are reaped and idle
# jobs finished and before missing slots are sent, so that jobs a receiver creates get
# their slots in the same pass. A receiver that raises ends the pass, as any failure there
# does (the reconciler logs it and runs again after COREBOARD_RECONCILE_MS).
reconciler_pass = Signal()
