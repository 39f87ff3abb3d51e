"""The live overview: what runs now, the cluster, recent results."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs import selectors


def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "jobs/overview.html", selectors.overview(user=request.user))
