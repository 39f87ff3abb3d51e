"""History: the list of jobs a person may see, filtered and paginated."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from jobs import kinds, selectors
from jobs.forms import HistoryFilterForm

PAGE_SIZE = 25


def job_list(request: HttpRequest) -> HttpResponse:
    filters = HistoryFilterForm(request.GET or None, kind_names=[k.name for k in kinds.all_kinds()])
    status = kind = None
    if filters.is_valid():
        status = filters.cleaned_data["status"] or None
        kind = filters.cleaned_data["kind"] or None
    jobs = selectors.job_history(user=request.user, status=status, kind=kind)
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "jobs/job_list.html",
        {"page": page, "filters": filters, "query": query.urlencode()},
    )
