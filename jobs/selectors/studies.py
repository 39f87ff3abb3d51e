"""Reads of scaling studies, and their one JSON shape (API, page, exports).

Kept beside jobs/selectors.py rather than in it: a study's figures come from
jobs/scaling.py over its runs' wall times, as the job page defines them (Job.wall_seconds).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.db.models import QuerySet

from jobs import protocol, scaling
from jobs.models import Job, ScalingStudy

# The API's run fields, in its order (protocol.StudyRunState).
STUDY_EXPORT_COLUMNS = tuple(protocol.StudyRunState.__annotations__)


def studies_of(user: Any) -> QuerySet[ScalingStudy]:
    """A person's own studies, newest first: studies are private, also from staff (their
    runs, like every job, stay visible to staff on the job pages)."""
    if not user.is_authenticated:
        return ScalingStudy.objects.none()
    return ScalingStudy.objects.filter(owner_id=user.pk)


def study_get_for_user(*, user: Any, study_id: int) -> ScalingStudy | None:
    return studies_of(user).filter(pk=study_id).first()


def study_runs(study: ScalingStudy) -> dict[int, Job]:
    return {run.parallelism: run for run in study.runs.all()}


def study_as_dict(study: ScalingStudy) -> protocol.StudyState:
    """The one shape of a study, for its page, the API and the JSON export."""
    runs = study_runs(study)
    walls = {
        level: runs[level].wall_seconds
        if level in runs and runs[level].status == Job.Status.SUCCEEDED
        else None
        for level in study.levels
    }
    return protocol.study_state(study, scaling.scaling_analyse(walls), runs)


def study_csv(study: ScalingStudy) -> str:
    """One row per level, in STUDY_EXPORT_COLUMNS order (empty cells for missing figures)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STUDY_EXPORT_COLUMNS)
    for point in study_as_dict(study)["runs"]:
        row: dict[str, Any] = dict(point)
        writer.writerow(["" if row[c] is None else row[c] for c in STUDY_EXPORT_COLUMNS])
    return out.getvalue()


def study_export_name(study: ScalingStudy, extension: str) -> str:
    return f"scaling-study-{study.pk}.{extension}"
