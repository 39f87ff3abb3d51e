"""History: the jobs a person may see, searched, filtered, sorted, paginated, exported, compared."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse

from jobs import kinds, protocol, services
from jobs.forms import CompareForm, HistoryFilterForm, RunsCompareForm, history_filter_form
from jobs.history import HISTORY_SORT_COLUMNS
from jobs.models import Job
from jobs.selectors import jobs as selectors
from jobs.selectors import sweeps as sweep_selectors
from jobs.views import presentation

PAGE_SIZE = 25
# A text search lists (and counts) at most this many matches: a person narrows a search
# that finds more rather than pages through it, and counting them all costs a read of each
# (IdsFirstPaginator). Lists without a text search count every job: an index counts them.
SEARCH_LISTED_MAX = 1000


if TYPE_CHECKING:
    _Paginator = Paginator[Any]
else:  # Django's Paginator is generic only in its type stubs
    _Paginator = Paginator


class IdsFirstPaginator(_Paginator):
    """Finds a page's ids first, then loads only those rows; counts at most `count_limit`
    matches when given.

    OFFSET still steps over every row before the page, but the id query does it in an
    index (an index-only scan) instead of reading each of those rows from the table: page
    2000 of 60,000 jobs went from 36 ms to 14 (tests/benchmarks/history.py).

    With `count_limit`, the count stops at that many matches (`count_capped` says it did)
    and the pages reach no further: counting every match of a text search reads each
    matching row (an index only narrows the rows to recheck), 74 ms for 12,600 matches at
    100,000 jobs, while the first 1,001 cost a few.
    """

    def __init__(self, object_list: Any, per_page: int, *, count_limit: int | None = None):
        super().__init__(object_list, per_page)
        self.count_limit = count_limit

    @cached_property
    def _matched(self) -> int:
        jobs: Any = self.object_list
        if self.count_limit is not None:
            jobs = jobs.order_by()[: self.count_limit + 1]
        return int(jobs.count())

    @cached_property
    def count(self) -> int:
        return self._matched if self.count_limit is None else min(self._matched, self.count_limit)

    @property
    def count_capped(self) -> bool:
        return self.count_limit is not None and self._matched > self.count_limit

    def page(self, number: Any) -> Page[Any]:
        page = super().page(number)
        if page.number == 1:  # no rows to step over: one query
            return page
        ids = list(page.object_list.values_list("pk", flat=True))  # type: ignore[attr-defined]
        rows = self.object_list.order_by().in_bulk(ids)  # type: ignore[attr-defined]
        page.object_list = [rows[pk] for pk in ids if pk in rows]  # one may just be deleted
        return page


def _kind_names() -> list[tuple[str, str]]:
    """`(name, label)` of every kind: filters send the name and show the label."""
    return [(kind.name, kind.label) for kind in kinds.all_kinds()]


def _filter_form(request: HttpRequest) -> HistoryFilterForm:
    return history_filter_form(request.GET, user=request.user)


def _valid_query(request: HttpRequest, form: HistoryFilterForm) -> QueryDict:
    """The request's filters less the page and any field the form refused or does not have."""
    query = request.GET.copy()
    for name in list(query):
        if name not in form.fields or name in form.errors:
            del query[name]
    return query


def _sort_headers(query: QueryDict, current: str) -> dict[str, dict[str, str]]:
    """For each sortable column: the query that sorts by it (or flips it), and its aria-sort."""
    headers = {}
    for column in HISTORY_SORT_COLUMNS:
        if current == column:
            target, state = f"-{column}", "ascending"
        elif current == f"-{column}":
            target, state = column, "descending"
        else:
            target, state = f"-{column}", "none"
        sorted_query = query.copy()
        sorted_query["sort"] = target
        headers[column] = {"query": sorted_query.urlencode(), "aria_sort": state}
    return headers


@dataclass(frozen=True)
class _HistoryRow:
    """One row of the history table, its cells as text: formatted here once rather than
    through template filters (25 rows × 10 cells of lookups and localization were a third
    of the page's time)."""

    job: Job
    url: str
    kind_label: str
    owner: str
    wall: str
    speedup: str
    params: str
    code: list[str]
    # A sweep listed as one row (its run 0 stands for it): its page, jobs by status.
    sweep_url: str = ""
    sweep_status: str = ""
    sweep_jobs: int = 0
    sweep_done: int = 0
    sweep_swept: str = ""


def _history_row(
    job: Job,
    sweep_counts: dict[int, dict[str, int]] | None = None,
    sweep_swept: dict[int, list[str]] | None = None,
) -> _HistoryRow:
    wall, speedup = job.wall_seconds, job.speedup
    row = _HistoryRow(
        job=job,
        url=reverse("jobs:detail", args=[job.pk]),
        kind_label=presentation.job_kind_label(job),
        owner=job.owner.get_username(),
        wall="" if wall is None else presentation.duration_text(wall),
        speedup="" if speedup is None else f"{speedup:.2f}×",
        params=presentation.job_params_text(job),
        code=presentation.job_code_lines(job),
        sweep_url=reverse("jobs:sweep", args=[job.sweep_id]) if job.sweep_id else "",
    )
    if sweep_counts is None or job.sweep_id is None:
        return row
    counts = sweep_counts.get(job.sweep_id, {})
    return replace(
        row,
        wall="",
        speedup="",
        sweep_status=sweep_selectors.sweep_status(counts),
        sweep_jobs=sum(counts.values()),
        sweep_done=sum(n for status, n in counts.items() if status not in Job.ACTIVE_STATUSES),
        sweep_swept=", ".join((sweep_swept or {}).get(job.sweep_id, [])),
    )


def job_list(request: HttpRequest) -> HttpResponse:
    form = _filter_form(request)
    filters = form.filters()
    jobs = selectors.job_history_rows(user=request.user, sweeps_collapsed=True, **filters)
    searching = bool(filters["q"].strip())
    page = IdsFirstPaginator(
        jobs, PAGE_SIZE, count_limit=SEARCH_LISTED_MAX if searching else None
    ).get_page(request.GET.get("page"))
    # The same rule as job_history's: sweeps are one row unless jobs are matched one by one.
    collapsed = filters["sweep"] is None and not searching and not filters["status"]
    sweep_ids = {job.sweep_id for job in page if job.sweep_id} if collapsed else set()
    sweep_counts = sweep_selectors.sweep_counts(sweep_ids) if collapsed else None
    sweep_swept = sweep_selectors.sweep_swept_names(sweep_ids) if sweep_ids else {}
    page_query = request.GET.copy()
    page_query.pop("page", None)
    valid_query = _valid_query(request, form)
    compare_query = QueryDict(mutable=True)
    if filters["kind"]:
        compare_query["kind"] = filters["kind"]
        if filters["owner"] is not None:
            compare_query["owner"] = filters["owner"].get_username()
    return render(
        request,
        "jobs/job_list.html",
        {
            "page": page,
            "rows": [_history_row(job, sweep_counts, sweep_swept) for job in page],
            "filters": form,
            "query": page_query.urlencode(),
            "export_query": valid_query.urlencode(),
            "compare_query": compare_query.urlencode(),
            "sort_headers": _sort_headers(valid_query, filters["sort"]),
            "compare_runs_max": settings.COREBOARD_COMPARE_RUNS_MAX,
        },
    )


def job_export_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Every job of the history list with the same filters and order, as CSV.

    A filter the page would show an error for is a 400 here: an export should never hold
    something other than what was asked for. The page's own link leaves such filters out.
    A person with COREBOARD_EXPORTS_PER_PERSON exports streaming gets a 429 saying so; an
    export beyond COREBOARD_EXPORTS_AT_ONCE (everybody's) starts, headers first, and sends
    its rows once its turn comes.
    """
    form = _filter_form(request)
    if not form.is_valid():
        lines = [f"{name}: {' '.join(map(str, errors))}" for name, errors in form.errors.items()]
        return _plain_text("\n".join(lines), status=400)
    try:
        export = services.history_export_open(
            person=request.user,
            filters=form.filters(),
            asynchronous=isinstance(request, ASGIRequest),
        )
    except services.TooMany as refused:
        return _plain_text("\n".join(refused.messages), status=refused.status_code)
    return StreamingHttpResponse(
        export,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="coreboard-history.csv"'},
    )


def _plain_text(text: str, *, status: int) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")


def job_compare(request: HttpRequest) -> HttpResponse:
    form = CompareForm(
        request.GET or None, kind_names=_kind_names(), show_owner=request.user.is_staff
    )
    runs: list[dict[str, Any]] = []
    if form.is_valid():
        runs = selectors.job_runs_compared(
            user=request.user, kind=form.cleaned_data["kind"], owner=form.cleaned_data.get("owner")
        )
    return render(
        request,
        "jobs/compare.html",
        {"form": form, "runs": runs, "limit": selectors.HISTORY_COMPARE_LIMIT},
    )


def job_compare_runs(request: HttpRequest) -> HttpResponse:
    """Chosen jobs side by side: parameters (differences marked), figures, chunk-time
    distributions and task streams. Two to COREBOARD_COMPARE_RUNS_MAX of the viewer's own
    jobs (staff: anybody's); a job the viewer may not see is a 404, as on its own page."""
    limit = settings.COREBOARD_COMPARE_RUNS_MAX
    form = RunsCompareForm(request.GET, limit=limit)
    if not form.is_valid():
        return render(
            request,
            "jobs/compare_runs.html",
            {"form": form, "limit": limit, "runs": []},
            status=400,
        )
    jobs = selectors.jobs_compared(user=request.user, job_ids=form.cleaned_data["job"])
    ids = [job.pk for job in jobs]
    chunks = selectors.jobs_compared_chunks(ids)
    codes = selectors.jobs_code_ran(jobs)
    times, histogram = selectors.jobs_chunk_times(ids)
    runs = [
        presentation.compared_run(
            job,
            chunks_shown=len(chunks[job.pk]),
            chunk_times=times.get(job.pk),
            code=protocol.job_code(job, codes.get(job.pk, [])),
        )
        for job in jobs
    ]
    return render(
        request,
        "jobs/compare_runs.html",
        {
            "form": form,
            "limit": limit,
            "runs": runs,
            "param_rows": presentation.compared_params(jobs),
            "chunks_max": selectors.COMPARE_CHUNKS_MAX,
            "histogram": histogram,
            "streams": [
                {
                    "id": run["id"],
                    "job": {"started_at": run["started_at"], "finished_at": run["finished_at"]},
                    "chunks": chunks[run["id"]],
                }
                for run in runs
            ],
        },
    )
