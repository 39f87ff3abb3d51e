"""Job pages: create, watch, cancel (login required by LoginRequiredMiddleware)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobs import kinds, selectors, services
from jobs.forms import PARAMS_PREFIX, JobOptionsForm, UploadWidget
from jobs.models import Job


def job_or_404(request: HttpRequest, job_id: int) -> Job:
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    if job is None:
        raise Http404("No such job.")
    return job


def job_new(request: HttpRequest) -> HttpResponse:
    available = kinds.all_kinds()
    name = request.POST.get("kind") or request.GET.get("kind") or available[0].name
    try:
        kind = kinds.get(name)
    except kinds.UnknownKind:
        raise Http404(f"Unknown job kind {name!r}.") from None
    data = request.POST.copy() if request.method == "POST" else None
    upload_errors = _uploads_from_form(request, kind, data)
    params_form = kind.form_class(data, prefix=PARAMS_PREFIX)
    for name in kind.upload_fields():
        params_form.fields[name].widget = UploadWidget()
    for name, errors in upload_errors.items():
        params_form.add_error(name, errors)
    options_form = JobOptionsForm(data)
    if request.method == "POST" and params_form.is_valid() and options_form.is_valid():
        try:
            job = services.job_create(
                owner=request.user,
                kind=kind.name,
                params=params_form.cleaned_data,
                parallelism=options_form.cleaned_data["parallelism"],
            )
        except services.JobRejected as rejected:
            for field, errors in rejected.errors.get("params", {}).items():
                params_form.add_error(None if field == "__all__" else field, errors)
            if "parallelism" in rejected.errors:
                options_form.add_error("parallelism", rejected.errors["parallelism"])
        else:
            return redirect("jobs:detail", job_id=job.pk)
    return render(
        request,
        "jobs/job_new.html",
        {
            "kinds": available,
            "kind": kind,
            "params_form": params_form,
            "options_form": options_form,
        },
        status=400 if request.method == "POST" else 200,
    )


def _in_form_order(job: Job) -> dict[str, object]:
    """The job's parameters in the order its kind's form declares them (jsonb sorts keys)."""
    try:
        order = list(kinds.get(job.kind).form_class.base_fields)
    except kinds.UnknownKind:
        return dict(job.params)
    return dict(sorted(job.params.items(), key=lambda item: _position(order, item[0])))


def _position(order: list[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _preview_url_template(job: Job) -> str | None:
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return None
    if kind.preview_type is None:
        return None
    url = reverse("api-chunk-preview", args=[job.pk, 0])
    return url.replace("/chunks/0/", "/chunks/{index}/")


def _uploads_from_form(
    request: HttpRequest, kind: kinds.JobKind, data: QueryDict | None
) -> dict[str, list[str]]:
    """Store files posted for the kind's upload fields; put their ids into `data`."""
    errors: dict[str, list[str]] = {}
    if data is None:
        return errors
    for name in kind.upload_fields():
        key = f"{PARAMS_PREFIX}-{name}"
        file = request.FILES.get(key)
        if file is None:
            continue
        try:
            data[key] = str(services.upload_create(owner=request.user, file=file).pk)
        except ValidationError as error:
            errors[name] = error.messages
    return errors


def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = job_or_404(request, job_id)
    return render(
        request,
        "jobs/job_detail.html",
        {
            "job": job,
            "params_json": json.dumps(_in_form_order(job), indent=2),
            "preview_url": _preview_url_template(job),
            "snapshot": selectors.job_snapshot(job_id=job.pk),
        },
    )


@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = job_or_404(request, job_id)
    if services.job_cancel(job=job):
        messages.success(request, f"Job {job.pk} cancelled.")
    else:
        messages.info(request, f"Job {job.pk} had already ended ({job.status}).")
    return redirect("jobs:detail", job_id=job.pk)
