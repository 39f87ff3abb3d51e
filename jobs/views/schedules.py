"""Schedule pages: a person's schedules, a new one from a job ("Schedule this"), one
schedule with its runs and last refusal, changed, turned on or off, deleted."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.forms import ScheduleForm
from jobs.models import Job, Schedule
from jobs.selectors import schedules as selectors
from jobs.services import Refused, schedules
from jobs.views import refusals

RUNS_SHOWN = 20
JOBS_OFFERED = 50


def schedule_or_404(request: HttpRequest, schedule_id: int) -> Schedule:
    schedule = selectors.schedule_get_for_user(user=request.user, schedule_id=schedule_id)
    if schedule is None:
        raise Http404("No such schedule.")
    return schedule


def schedule_list(request: HttpRequest) -> HttpResponse:
    mine = [selectors.schedule_as_dict(s) for s in selectors.schedules_of(request.user)[:200]]
    return render(request, "jobs/schedule_list.html", {"schedules": mine})


def _own_jobs(request: HttpRequest) -> list[Job]:
    return list(Job.objects.filter(owner_id=request.user.pk).order_by("-pk")[:JOBS_OFFERED])


def _job_label(job: Job) -> str:
    """A job in the form's list: short enough for a phone's width."""
    params = ", ".join(f"{k}={v}" for k, v in job.params.items())
    return f"#{job.pk} {job.kind} {params[:24]}{'…' if len(params) > 24 else ''}"


def _save(
    request: HttpRequest, form: ScheduleForm, *, job: Job | None, schedule: Schedule | None
) -> Schedule | None:
    """The form's schedule saved, or None with the refusal's errors beside its fields."""
    data = form.schedule_data()
    data.pop("job", None)
    base: Any = job if schedule is None else schedule
    try:
        return schedules.schedule_save(
            owner=request.user,
            name=data["name"],
            kind=base.kind,
            params=base.params,
            parallelism=base.parallelism,
            chunk_time_limit_s=base.chunk_time_limit_s,
            timing=selectors.Timing(
                cron=data["cron"] or "",
                every=data["every"],
                unit=data.get("unit") or "minutes",
                timezone=data["timezone"],
            ),
            enabled=data["enabled"],
            skip_if_active=data["skip_if_active"],
            source=job,
            schedule=schedule,
        )
    except Refused as refused:
        refusals.form_add_refusal(refused, form)
        return None


def schedule_new(request: HttpRequest) -> HttpResponse:
    jobs = _own_jobs(request)
    chosen = request.POST.get("job") or request.GET.get("job")
    initial: dict[str, Any] = {"how": "every", "every": 1, "unit": "days", "enabled": True}
    form = ScheduleForm(request.POST or None, initial=initial)
    form.fields["job"] = forms.TypedChoiceField(
        label="Job to repeat (its kind and parameters)",
        coerce=int,
        choices=[(j.pk, _job_label(j)) for j in jobs],
        initial=chosen,
    )
    form.order_fields(["job"])
    if request.method == "POST" and form.is_valid():
        job = next(j for j in jobs if j.pk == form.cleaned_data["job"])
        saved = _save(request, form, job=job, schedule=None)
        if saved is not None:
            messages.success(request, f"Schedule “{saved.name}” saved.")
            return redirect("jobs:schedule", schedule_id=saved.pk)
    elif chosen and not form.is_bound:
        picked = next((j for j in jobs if str(j.pk) == chosen), None)
        if picked is not None:
            form.initial["name"] = f"{picked.kind} (from job {picked.pk})"
    return render(request, "jobs/schedule_new.html", {"form": form, "jobs": jobs})


def schedule_detail(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = schedule_or_404(request, schedule_id)
    state = selectors.schedule_as_dict(schedule)
    initial = {**state, "how": "cron" if state["cron"] else "every"}
    form = ScheduleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form, job=None, schedule=schedule)
        if saved is not None:
            messages.success(request, f"Schedule “{saved.name}” saved.")
            return redirect("jobs:schedule", schedule_id=saved.pk)
    runs = schedule.runs.order_by("-pk")[:RUNS_SHOWN]
    return render(
        request,
        "jobs/schedule_detail.html",
        {
            "schedule": schedule,
            "state": state,
            "form": form,
            "runs": runs,
            "next_run_at": selectors.schedule_next_run(schedule),
        },
    )


@require_POST
def schedule_toggle(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = schedule_or_404(request, schedule_id)
    enabled = request.POST.get("enabled") == "1"
    schedules.schedule_set_enabled(schedule=schedule, enabled=enabled)
    messages.success(request, f"Schedule “{schedule.name}” turned {'on' if enabled else 'off'}.")
    return redirect("jobs:schedule", schedule_id=schedule.pk)


@require_POST
def schedule_delete(request: HttpRequest, schedule_id: int) -> HttpResponse:
    schedule = schedule_or_404(request, schedule_id)
    schedules.schedule_delete(schedule=schedule)
    messages.success(request, f"Schedule “{schedule.name}” deleted; its runs stay in history.")
    return redirect("jobs:schedules")
