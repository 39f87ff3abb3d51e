"""Scaling study pages: start one from a finished job, watch it, list, cancel, export."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from jobs.models import ScalingStudy
from jobs.selectors import jobs as selectors
from jobs.selectors import studies as study_selectors
from jobs.services import Refused, studies
from jobs.views import refusals


def study_or_404(request: HttpRequest, study_id: int) -> ScalingStudy:
    study = study_selectors.study_get_for_user(user=request.user, study_id=study_id)
    if study is None:
        raise Http404("No such scaling study.")
    return study


@require_POST
def study_create(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    try:
        study = studies.study_create(owner=request.user, job=job, by=request.user)
    except Refused as refused:
        return refusals.refusal_redirect(
            request, refused, "jobs:detail", prefix="Cannot measure scaling: ", job_id=job.pk
        )
    return redirect("jobs:study", study_id=study.pk)


def study_list(request: HttpRequest) -> HttpResponse:
    mine = study_selectors.studies_of(request.user).select_related("source")[:200]
    return render(request, "jobs/study_list.html", {"studies": mine})


def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_or_404(request, study_id)
    return render(
        request,
        "jobs/study_detail.html",
        {"study": study, "state": study_selectors.study_as_dict(study)},
    )


@require_http_methods(["GET", "HEAD", "POST"])
def study_cancel(request: HttpRequest, study_id: int) -> HttpResponse:
    """GET asks for confirmation (as cancelling a job does); POST cancels the study."""
    study = study_or_404(request, study_id)
    if request.method != "POST":
        return render(request, "jobs/study_cancel.html", {"study": study})
    try:
        studies.study_cancel(study=study)
    except Refused as refused:
        return refusals.refusal_redirect(
            request, refused, "jobs:study", level=messages.INFO, study_id=study.pk
        )
    messages.success(request, f"Scaling study {study.pk} cancelled.")
    return redirect("jobs:study", study_id=study.pk)


def study_export_csv(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_or_404(request, study_id)
    response = HttpResponse(study_selectors.study_csv(study), content_type="text/csv")
    name = study_selectors.study_export_name(study, "csv")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def study_export_json(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_or_404(request, study_id)
    body = json.dumps(study_selectors.study_as_dict(study), indent=2)
    response = HttpResponse(body, content_type="application/json")
    name = study_selectors.study_export_name(study, "json")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
