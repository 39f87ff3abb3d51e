"""Job pages: create or run again, watch, cancel, retry, delete (login required)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods, require_POST

from jobs import kinds, protocol, services
from jobs.engine import redis_clients
from jobs.forms import PARAMS_PREFIX, JobOptionsForm, UploadWidget
from jobs.models import Job, priority_name
from jobs.selectors import jobs as selectors
from jobs.services import admission
from jobs.views import insights, presentation, refusals


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
    refused: services.Refused | None = None
    try:
        upload_errors = _uploads_from_form(request, kind, data)
    except services.RateLimited as limited:
        refused, upload_errors = limited, {}
    params_initial = options_initial = None
    if rerun is not None and data is None:
        params_initial = rerun.params
        options_initial = {
            "parallelism": rerun.parallelism or None,
            "chunk_time_limit_s": rerun.chunk_time_limit_s,
            "priority": priority_name(rerun.priority),
        }
    params_form = kind.form_class(data, initial=params_initial, prefix=PARAMS_PREFIX)
    for name in kind.upload_fields():
        params_form.fields[name].widget = UploadWidget()
    for name, errors in upload_errors.items():
        params_form.add_error(name, errors)
    options_form = JobOptionsForm(data, initial=options_initial, kind=kind, user=request.user)
    if refused is not None:
        refusals.form_add_refusal(refused, params_form, options_form)
    elif request.method == "POST" and params_form.is_valid() and options_form.is_valid():
        try:
            job = services.job_create(
                owner=request.user,
                kind=kind.name,
                params=params_form.cleaned_data,
                parallelism=options_form.cleaned_data["parallelism"],
                chunk_time_limit_s=options_form.cleaned_data["chunk_time_limit_s"],
                priority=options_form.cleaned_data["priority"],
                rerun_of=rerun,
                by=request.user,
            )
        except (services.Rejected, services.RateLimited) as refusal:
            refused = refusal
            refusals.form_add_refusal(refusal, params_form, options_form)
        else:
            return redirect("jobs:detail", job_id=job.pk)
    response = render(
        request,
        "jobs/job_new.html",
        {
            "error_summary": form_error_summary(params_form, options_form),
            "kinds": available,
            "kind": kind,
            "params_form": params_form,
            "options_form": options_form,
            "rerun": rerun,
            "code_changes": _rerun_code_changes(rerun) if rerun is not None else [],
            "kept_uploads": _kept_uploads(request, kind, params_form),
        },
        status=400 if request.method == "POST" else 200,
    )
    return refusals.refusal_status(refused, response)


def form_error_summary(*forms_: forms.Form) -> list[dict[str, str]]:
    """Every error of a refused form, worded as beside its field: `Label: message`."""
    summary: list[dict[str, str]] = []
    for form in forms_:
        if not form.is_bound:
            continue
        for message in form.non_field_errors():
            summary.append({"id": "", "label": "", "message": str(message)})
        for name, errors in form.errors.items():
            if name == NON_FIELD_ERRORS:
                continue
            bound = form[name]
            for message in errors:
                summary.append(
                    {"id": bound.id_for_label, "label": str(bound.label), "message": str(message)}
                )
    return summary


def _rerun_source(request: HttpRequest) -> Job | None:
    """The job named by `rerun` (query on GET, form field on POST), if the person may see it."""
    value = (request.POST if request.method == "POST" else request.GET).get("rerun")
    if not value:
        return None
    try:
        job_id = int(value)
    except ValueError:
        raise Http404("No such job.") from None
    return selectors.job_get_for_user(user=request.user, job_id=job_id)


def _kept_uploads(
    request: HttpRequest, kind: kinds.JobKind, params_form: forms.Form
) -> list[dict[str, object]]:
    """Uploads the form carries in hidden inputs, so a rerun (or a form sent back with
    errors) uses the same file unless the person picks another one.

    A file input cannot be prefilled, and a browser sends an empty file input as a part of
    its own; so the kept id travels under another name (`<field>-kept`), and a file picked
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
        try:
            upload = selectors.upload_get_for_user(user=request.user, upload_id=upload_id)
        except Http404:
            label = f"upload #{upload_id}"
        else:
            label = f"“{upload.name}”"
        # Form templates print help_text unescaped, and upload names come from people.
        params_form.fields[name].help_text = format_html(
            "Uses {} again unless you choose another file.", label
        )
        kept.append({"kept_name": _kept_name(params_form.add_prefix(name)), "id": upload_id})
    return kept


def _kept_name(html_name: str) -> str:
    return f"{html_name}-kept"


def _preview_url_template(job: Job) -> str | None:
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return None
    if kind.preview_type is None:
        return None
    url = reverse("api-chunk-preview", args=[job.pk, 0])
    return url.replace("/chunks/0/", "/chunks/{index}/")


def _output_urls(job: Job) -> dict[str, str]:
    """The API URLs the page reads a job's output and CPU/memory samples from, and one
    chunk's state and output, as templates with `{index}` (static/lib/urls.mjs urlFill)."""
    chunk_output = reverse("api-job-chunk-output", args=[job.pk, 0])
    chunk = reverse("api-job-chunk", args=[job.pk, 0])
    return {
        "chunk_url": chunk.replace("/chunks/0/", "/chunks/{index}/"),
        "output_url": reverse("api-job-output", args=[job.pk]),
        "chunk_output_url": chunk_output.replace("/chunks/0/", "/chunks/{index}/"),
        "resources_url": reverse("api-job-resources", args=[job.pk]),
    }


def _uploads_from_form(
    request: HttpRequest, kind: kinds.JobKind, data: QueryDict | None
) -> dict[str, list[str]]:
    """Store files posted for the kind's upload fields; put their ids into `data`.

    Each file spends an upload from the person's rate, as the API's uploads do; RateLimited
    (nothing stored) when none is left."""
    errors: dict[str, list[str]] = {}
    if data is None:
        return errors
    for name in kind.upload_fields():
        key = f"{PARAMS_PREFIX}-{name}"
        file = request.FILES.get(key)
        if file is None:
            kept = data.get(_kept_name(key))
            if kept:
                data[key] = kept
            else:
                data.pop(key, None)
            continue
        admission.rate_take(person=request.user, scope=admission.Scope.UPLOAD)
        try:
            data[key] = str(services.upload_create(owner=request.user, file=file).pk)
        except services.Rejected as rejected:
            # The service names its field `file`; here it is the kind's upload field.
            errors[name] = rejected.messages
    return errors


def _summary_context(job: Job) -> dict[str, object]:
    """What the job page shows once a job has ended: its result and its speedup, explained."""
    return {
        "job": job,
        **presentation.result_context(job),
        "insight": insights.job_speedup_insight(job),
    }


def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    live = selectors.job_live(job)
    return render(
        request,
        "jobs/job_detail.html",
        {
            "live": live,
            # After job_live, whose registry read (if it timed out) already told.
            "broker": redis_clients.broker_status() if job.is_active else None,
            **_summary_context(job),
            "kind_label": presentation.job_kind_label(job),
            "params_display": presentation.job_params_display(job),
            "time_limit_text": presentation.job_time_limit_text(job),
            "code_display": presentation.job_code_display(job, selectors.job_code(job)),
            "code_changes": _rerun_code_changes(job.rerun_of, now=job) if job.rerun_of else [],
            "preview_url": _preview_url_template(job),
            **_output_urls(job),
            # Every chunk's status comes over the socket (job.snapshot), packed.
            "snapshot": {
                "job": protocol.job_state(job),
                "chunks": [],
                "live": live,
            },
        },
    )


def _rerun_code_changes(earlier: Job, *, now: Job | None = None) -> list[str]:
    return presentation.code_changes(
        earlier=earlier, earlier_source=selectors.job_kind_source_ran(earlier), now=now
    )


def job_summary(request: HttpRequest, job_id: int) -> HttpResponse:
    """The ended-job part of the job page, fetched by the page when the job ends live."""
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    return render(request, "jobs/_job_summary.html", _summary_context(job))


def _job_action(
    request: HttpRequest, job_id: int, action: Callable[..., object], done: str
) -> HttpResponse:
    """Run a service action on a visible job; its refusal or `done` as a message on the
    job's page (a refusal as information: the job most likely ended meanwhile)."""
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    try:
        action(job=job)
    except services.Refused as refused:
        return refusals.refusal_redirect(
            request, refused, "jobs:detail", level=messages.INFO, job_id=job.pk
        )
    messages.success(request, done.format(job=job))
    return redirect("jobs:detail", job_id=job.pk)


@require_http_methods(["GET", "HEAD", "POST"])
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET asks for confirmation (as deleting does); POST cancels and goes back to the job."""
    if request.method == "POST":
        return _job_action(request, job_id, services.job_cancel, "Job {job.pk} cancelled.")
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    context = {"job": job, "kind_label": presentation.job_kind_label(job)}
    return render(request, "jobs/job_cancel.html", context)


@require_POST
def job_retry(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_action(
        request,
        job_id,
        partial(services.job_retry_failed, by=request.user),
        "Job {job.pk}: retrying what failed.",
    )


@require_http_methods(["GET", "POST"])
def job_delete(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET asks for confirmation; POST deletes and goes back to the history."""
    job = selectors.job_get_for_user(user=request.user, job_id=job_id)
    if request.method == "POST":
        try:
            services.job_delete(job=job)
        except services.Refused as refused:
            return refusals.refusal_redirect(request, refused, "jobs:detail", job_id=job.pk)
        messages.success(request, f"Job {job.pk} deleted.")
        return redirect("jobs:list")
    context = {"job": job, "kind_label": presentation.job_kind_label(job)}
    return render(request, "jobs/job_delete.html", context)
