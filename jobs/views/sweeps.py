"""Sweep pages: the new-job form in sweep mode, a sweep's runs side by side, cancel, CSV."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from jobs import kinds, scaling
from jobs.forms import JobOptionsForm, SweepParamsForm
from jobs.kinds.base import display_value
from jobs.models import Sweep
from jobs.selectors import sweeps as sweep_selectors
from jobs.services import RateLimited, Refused, Rejected, sweeps
from jobs.views import refusals
from jobs.views.jobs import form_error_summary

# The figures a sweep's chart can plot, by the API's field names (jobs.protocol.SweepRunState).
SWEEP_CHART_FIGURES = (
    (scaling.WALL.key, f"{scaling.WALL.label} (s)"),
    ("cpu_seconds", "CPU time (s)"),
    (scaling.SPEEDUP.key, scaling.SPEEDUP.label),
)


def sweep_or_404(request: HttpRequest, sweep_id: int) -> Sweep:
    sweep = sweep_selectors.sweep_get_for_user(user=request.user, sweep_id=sweep_id)
    if sweep is None:
        raise Http404("No such sweep.")
    return sweep


def sweep_new(request: HttpRequest) -> HttpResponse:
    """The new-job form of one kind in sweep mode: any parameter may take several values,
    and the sweep runs every combination of them (a grid)."""
    available = kinds.all_kinds()
    name = request.POST.get("kind") or request.GET.get("kind") or available[0].name
    try:
        kind = kinds.get(name)
    except kinds.UnknownKind:
        raise Http404(f"Unknown job kind {name!r}.") from None
    data = request.POST if request.method == "POST" else None
    params_form = SweepParamsForm(data, kind=kind)
    options_form = JobOptionsForm(data, kind=kind)
    refused: Refused | None = None
    if data is not None and params_form.is_valid() and options_form.is_valid():
        try:
            grid, shared = params_form.grid_and_params()
            if not grid:
                raise Rejected(
                    {
                        "__all__": [
                            "Give at least one parameter several values, separated by commas; "
                            "for one run, start a job instead."
                        ]
                    }
                )
            sweep = sweeps.sweep_create(
                owner=request.user,
                kind=kind.name,
                params=shared,
                grid=grid,
                parallelism=options_form.cleaned_data["parallelism"],
                chunk_time_limit_s=options_form.cleaned_data["chunk_time_limit_s"],
                by=request.user,
            )
        except ValidationError as invalid:
            for field, errors in invalid.message_dict.items():
                params_form.add_error(field, errors)
        except (Rejected, RateLimited) as refusal:
            refused = refusal
            refusals.form_add_refusal(refusal, params_form, options_form)
        else:
            return redirect("jobs:sweep", sweep_id=sweep.pk)
    response = render(
        request,
        "jobs/sweep_new.html",
        {
            "error_summary": form_error_summary(params_form, options_form),
            "kinds": available,
            "kind": kind,
            "params_form": params_form,
            "options_form": options_form,
            "max_runs": sweeps.max_runs(),
        },
        status=400 if data is not None else 200,
    )
    return refusals.refusal_status(refused, response)


def sweep_detail(request: HttpRequest, sweep_id: int) -> HttpResponse:
    sweep = sweep_or_404(request, sweep_id)
    state = sweep_selectors.sweep_as_dict(sweep)
    param_columns = sweep_selectors.sweep_param_columns(state)
    table_rows = [
        (run, [display_value(run["params"].get(name)) for name in param_columns])
        for run in state["runs"]
    ]
    return render(
        request,
        "jobs/sweep_detail.html",
        {
            "sweep": sweep,
            "state": state,
            "param_columns": param_columns,
            "table_rows": table_rows,
            "speedup_definition": scaling.SPEEDUP.definition,
            "figures": SWEEP_CHART_FIGURES,
            "api_url": reverse("api-sweep", args=[sweep.pk]),
        },
    )


@require_POST
def sweep_cancel(request: HttpRequest, sweep_id: int) -> HttpResponse:
    # Whoever may see its jobs may cancel them, as on the job pages (staff: everyone's).
    sweep = sweep_or_404(request, sweep_id)
    try:
        sweeps.sweep_cancel(sweep=sweep)
    except Refused as refused:
        return refusals.refusal_redirect(
            request, refused, "jobs:sweep", level=messages.INFO, sweep_id=sweep.pk
        )
    messages.success(request, f"Sweep {sweep.pk} cancelled.")
    return redirect("jobs:sweep", sweep_id=sweep.pk)


def sweep_export_csv(request: HttpRequest, sweep_id: int) -> HttpResponse:
    sweep = sweep_or_404(request, sweep_id)
    body = sweep_selectors.sweep_csv(sweep_selectors.sweep_as_dict(sweep))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    name = sweep_selectors.sweep_export_name(sweep, "csv")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
