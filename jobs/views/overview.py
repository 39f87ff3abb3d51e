"""The live overview: what runs now, the cluster, recent results."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs import cluster, selectors


def overview(request: HttpRequest) -> HttpResponse:
    # The same state the overview socket pushes every second, so the first paint is full.
    initial = {
        **selectors.overview(user=request.user, active_max=settings.COREBOARD_OVERVIEW_ACTIVE_MAX),
        "cluster": selectors.cluster_for_user(user=request.user, state=cluster.cluster_state()),
    }
    return render(request, "jobs/overview.html", {"initial": initial})
