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
        from jobs.services import studies

        kinds.load_configured()
        # The engine announces, the studies listen: the engine must not import the services.
        signals.job_finished.connect(
            studies.study_advance_after_run, dispatch_uid="studies-advance-after-run"
        )
        signals.reconciler_pass.connect(studies.studies_advance, dispatch_uid="studies-advance")
