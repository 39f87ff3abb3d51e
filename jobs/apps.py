from __future__ import annotations

from django.apps import AppConfig

from jobs import kinds
from jobs.engine import signals


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: the studies import models, which Django allows only
        # once its app registry is ready, i.e. from ready() on.
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from jobs.models import Schedule
        from jobs.services import schedules, studies

        kinds.load_configured()
        # The engine announces, the studies listen: the engine must not import the services.
        signals.job_finished.connect(
            studies.study_advance_after_run, dispatch_uid="studies-advance-after-run"
        )
        signals.reconciler_pass.connect(studies.studies_advance, dispatch_uid="studies-advance")
        # A schedule's PeriodicTask goes with it, also when its owner is deleted (a cascade);
        # a deactivated person's schedules stop (workers cannot read auth_user to check).
        post_delete.connect(
            schedules.schedule_deleted, sender=Schedule, dispatch_uid="schedule-deleted"
        )
        post_save.connect(
            schedules.schedules_stop_if_inactive,
            sender=get_user_model(),
            dispatch_uid="schedules-stop-if-inactive",
        )
