"""Job pages: create or run again, watch, cancel, retry, delete (login required)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods, require_POST

from jobs import kinds, selectors, services
from jobs.forms import PARAMS_PREFIX, JobOptionsForm, UploadWidget
from jobs.models import Job


def job_or_404(request: HttpRequest, job_id: int) -> Job:
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    if job is None:
        raise Http404("No such job.")
    return job


def job_new(request: HttpRequest) -> HttpResponse:
    """The form of one kind; with `?rerun=<id>`, prefilled from that job to run it again."""
    available = kinds.all_kinds()
    rerun = _rerun_source(request)
    name = (
        (rerun.kind if rerun else None)
        or request.POST.get("kind")
        or request.GET.get("kind")
        or available[0].name
    )
    try:
        kind = kinds.get(name)
    except kinds.UnknownKind:
        raise Http404(f"Unknown job kind {name!r}.") from None
    data = request.POST.copy() if request.method == "POST" else None
    upload_errors = _uploads_from_form(request, kind, data)
    params_initial = options_initial = None
    if rerun is not None and data is None:
        params_initial = selectors.job_rerun_params(rerun)
        options_initial = {"parallelism": rerun.parallelism}
    params_form = kind.form_class(data, initial=params_initial, prefix=PARAMS_PREFIX)
    for name in kind.upload_fields():
        params_form.fields[name].widget = UploadWidget()
    for name, errors in upload_errors.items():
        params_form.add_error(name, errors)
    options_form = JobOptionsForm(data, initial=options_initial)
    if request.method == "POST" and params_form.is_valid() and options_form.is_valid():
        try:
            job = services.job_create(
                owner=request.user,
                kind=kind.name,
                params=params_form.cleaned_data,
                parallelism=options_form.cleaned_data["parallelism"],
                rerun_of=rerun,
            )
        except services.JobRejected as rejected:
            for field, errors in rejected.errors.get("params", {}).items():
                params_form.add_error(None if field == "__all__" else field, errors)
            if "parallelism" in rejected.errors:
                options_form.add_error("parallelism", rejected.errors["parallelism"])
            for message in rejected.errors.get("quota", []):
                params_form.add_error(None, message)
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
            "rerun": rerun,
            "kept_uploads": _kept_uploads(kind, params_form, rerun),
        },
        status=400 if request.method == "POST" else 200,
    )


def _rerun_source(request: HttpRequest) -> Job | None:
    """The job named by `rerun` (query on GET, form field on POST), if the person may see it."""
    value = (request.POST if request.method == "POST" else request.GET).get("rerun")
    if not value:
        return None
    try:
        job_id = int(value)
    except ValueError:
        raise Http404("No such job.") from None
    return job_or_404(request, job_id)


def _kept_uploads(
    kind: kinds.JobKind, params_form: forms.Form, rerun: Job | None
) -> list[dict[str, object]]:
    """Uploads the form carries in hidden inputs, so a rerun (or a form sent back with
    errors) uses the same file unless the person picks another one.

    A file input cannot be prefilled; the hidden input shares its name, and a file picked
    in the file input replaces it (see `_uploads_from_form`).
    """
    kept: list[dict[str, object]] = []
    for name in kind.upload_fields():
        if params_form.is_bound:
            if params_form.errors.get(name):
                continue
            value = params_form.data.get(params_form.add_prefix(name))
        else:
            value = params_form.initial.get(name)
        try:
            upload_id = int(str(value))
        except ValueError:
            continue
        label = f"upload #{upload_id}"
        original = rerun.params.get(name) if rerun is not None else None
        if isinstance(original, dict) and original.get("id") == upload_id:
            label = f"“{original.get('name')}”"
        # Form templates print help_text unescaped, and upload names come from people.
        params_form.fields[name].help_text = format_html(
            "Uses {} again unless you choose another file.", label
        )
        kept.append({"html_name": params_form.add_prefix(name), "id": upload_id})
    return kept


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


@require_POST
def job_retry(request: HttpRequest, job_id: int) -> HttpResponse:
    job = job_or_404(request, job_id)
    if services.job_retry_failed(job=job):
        messages.success(request, f"Job {job.pk}: retrying its failed chunks.")
    else:
        messages.info(request, f"Job {job.pk} has no failed chunks to retry ({job.status}).")
    return redirect("jobs:detail", job_id=job.pk)


@require_http_methods(["GET", "POST"])
def job_delete(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes and goes back to the history."""
    job = job_or_404(request, job_id)
    if request.method == "POST":
        if services.job_delete(job=job):
            messages.success(request, f"Job {job.pk} deleted.")
            return redirect("jobs:list")
        messages.error(
            request, f"Job {job.pk} is still {job.status}; cancel it before deleting it."
        )
        return redirect("jobs:detail", job_id=job.pk)
    return render(request, "jobs/job_delete.html", {"job": job})
