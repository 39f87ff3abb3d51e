"""The live overview: what runs now, the cluster, recent results; staff drain nodes here."""

from __future__ import annotations

import redis
from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs import kinds
from jobs.engine import redis_clients, workers
from jobs.selectors import jobs as selectors
from jobs.services import nodes


def overview(request: HttpRequest) -> HttpResponse:
    # The same state the overview socket pushes every second, so the first paint is full.
    try:
        cluster_state = workers.cluster_state()
    except redis.RedisError:
        # Jobs come from PostgreSQL; the cluster's live figures wait for the broker.
        cluster_state = workers.cluster_state_unknown()
    initial = selectors.overview_state(
        user=request.user,
        cluster_state=cluster_state,
        active_max=settings.COREBOARD_OVERVIEW_ACTIVE_MAX,
    )
    return render(
        request,
        "jobs/overview.html",
        {
            "initial": initial,
            # Jobs are named by their kind's label, as on every other page; the state (and
            # the socket) carries the kind's id, and a kind not installed here shows that.
            "kind_labels": {kind.name: kind.label for kind in kinds.all_kinds()},
            "kind_failures": selectors.kind_failures_seen(initial["cluster"]),
            "broker": redis_clients.broker_status(),
        },
    )


class NodeControlForm(forms.Form):
    node = forms.CharField(max_length=255)
    action = forms.ChoiceField(choices=[("drain", "Drain"), ("resume", "Resume")])


@require_POST
def node_control(request: HttpRequest) -> HttpResponse:
    """Drain or resume a worker node (staff only). A page script asks for JSON and
    announces the answer; a plain form post is redirected back to the overview."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can drain or resume worker nodes.")
    wants_json = "application/json" in request.headers.get("Accept", "")
    form = NodeControlForm(request.POST)
    if not form.is_valid():
        errors = {name: [str(e) for e in errs] for name, errs in form.errors.items()}
        if wants_json:
            return JsonResponse({"errors": errors}, status=400)
        for name, texts in errors.items():
            messages.error(request, f"{name}: {' '.join(texts)}")
        return redirect("jobs:overview")
    name = form.cleaned_data["node"]
    draining = form.cleaned_data["action"] == "drain"
    try:
        result = nodes.node_drain(node=name, draining=draining)
    except nodes.UnknownNode:
        message, status = f"No live worker node is called {name}.", 404
    except redis.RedisError:
        message = "The broker (Redis) did not answer; the node may not have changed. Try again."
        status = 503
    else:
        status = 200
        message = (
            f"Node {name} is draining: it finishes its running chunks and takes no more."
            if draining
            else f"Node {name} takes work again."
        )
        if result.unconfirmed:
            message += f" It did not confirm in time for queue(s) {', '.join(result.unconfirmed)}."
        if not result.claims_settled:
            message += (
                " It did not confirm in time that its processes stopped claiming chunks; "
                "they stop at their next chunk."
            )
    if wants_json:
        return JsonResponse({"message": message, "node": name}, status=status)
    (messages.success if status == 200 else messages.error)(request, message)
    return redirect("jobs:overview")
