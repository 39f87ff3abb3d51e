from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished
from django.db import close_old_connections, connection
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings

from jobs import services
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from jobs.views import history as history_views
from tests.factories import client_for, figures_settle, make_job

pytestmark = [pytest.mark.pages, pytest.mark.django_db]

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def set_times(
    job: Job,
    *,
    created: datetime = T0,
    seconds: float | None = None,
    cpu: float = 0.0,
    status: str = Job.Status.SUCCEEDED,
) -> None:
    started = created + timedelta(seconds=1)
    Job.objects.filter(pk=job.pk).update(
        created_at=created,
        started_at=started if seconds is not None else None,
        finished_at=started + timedelta(seconds=seconds) if seconds is not None else None,
        cpu_seconds=cpu,
        status=status,
    )


def listed(response: HttpResponseBase) -> list[int]:
    assert response.status_code == 200
    assert isinstance(response, HttpResponse)
    return [int(pk) for pk in re.findall(r'<tr data-job-id="(\d+)"', response.content.decode())]


def csv_rows(response: HttpResponseBase) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    text = response.getvalue().decode()
    return list(csv.DictReader(io.StringIO(text)))


def compared(response: HttpResponseBase) -> list[dict[str, Any]]:
    assert response.status_code == 200
    assert isinstance(response, HttpResponse)
    found = re.search(
        r'<script id="compare-runs" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    return json.loads(found.group(1)) if found else []


# --- the list --------------------------------------------------------------------------------


def test_history_lists_only_my_jobs_newest_first(
    alice_client: Client, alice: User, bob: User
) -> None:
    first, second = (
        make_job(alice, chunks=1),
        make_job(alice, "primes", start=0, stop=100, chunks=1),
    )
    make_job(bob, chunks=1)
    assert listed(alice_client.get("/history/")) == [second.pk, first.pk]


def test_search_by_id(alice_client: Client, alice: User) -> None:
    wanted, other = make_job(alice, chunks=1), make_job(alice, chunks=1)
    assert listed(alice_client.get("/history/", {"q": str(wanted.pk)})) == [wanted.pk]
    assert listed(alice_client.get("/history/", {"q": f" #{other.pk} "})) == [other.pk]


def test_search_by_id_never_finds_another_users_job(
    alice_client: Client, alice: User, bob: User
) -> None:
    bobs = make_job(bob, chunks=1)
    assert listed(alice_client.get("/history/", {"q": str(bobs.pk)})) == []


def test_search_with_a_number_past_bigint_does_not_fail(alice_client: Client, alice: User) -> None:
    make_job(alice, chunks=1)
    assert listed(alice_client.get("/history/", {"q": "9" * 30})) == []


def test_search_by_kind_ignores_case(alice_client: Client, alice: User) -> None:
    prime_job, burn_job = (
        make_job(alice, "primes", start=0, stop=100, chunks=1),
        make_job(alice, chunks=1),
    )
    assert listed(alice_client.get("/history/", {"q": "PRIM"})) == [prime_job.pk]
    assert listed(alice_client.get("/history/", {"q": "bur"})) == [burn_job.pk]


def test_search_by_parameter_text(alice_client: Client, alice: User) -> None:
    wanted = make_job(alice, "primes", start=0, stop=7771, chunks=1)
    other = make_job(alice, "primes", start=0, stop=100, chunks=1)
    make_job(alice, chunks=1)
    assert listed(alice_client.get("/history/", {"q": '"stop": 7771'})) == [wanted.pk]
    assert listed(alice_client.get("/history/", {"q": "STOP"})) == [other.pk, wanted.pk]


def test_filter_by_status(alice_client: Client, alice: User) -> None:
    pending, cancelled = make_job(alice, chunks=1), make_job(alice, chunks=1)
    services.job_cancel(job=cancelled)
    assert listed(alice_client.get("/history/", {"status": "cancelled"})) == [cancelled.pk]
    assert listed(alice_client.get("/history/", {"status": "pending"})) == [pending.pk]


def test_filter_by_kind(alice_client: Client, alice: User) -> None:
    burn_job, prime_job = (
        make_job(alice, chunks=1),
        make_job(alice, "primes", start=0, stop=100, chunks=1),
    )
    assert listed(alice_client.get("/history/", {"kind": "burn"})) == [burn_job.pk]
    assert listed(alice_client.get("/history/", {"kind": "primes"})) == [prime_job.pk]


def test_filter_by_created_dates_includes_both_ends(alice_client: Client, alice: User) -> None:
    jobs = [make_job(alice, chunks=1) for _ in range(4)]
    for day, job in zip((9, 10, 11, 12), jobs, strict=True):
        set_times(job, created=datetime(2024, 3, day, 23, 59, tzinfo=UTC))
    response = alice_client.get(
        "/history/", {"created_from": "2024-03-10", "created_to": "2024-03-11"}
    )
    assert listed(response) == [jobs[2].pk, jobs[1].pk]
    assert listed(alice_client.get("/history/", {"created_from": "2024-03-12"})) == [jobs[3].pk]
    assert listed(alice_client.get("/history/", {"created_to": "2024-03-09"})) == [jobs[0].pk]


def test_date_range_the_wrong_way_round_is_a_field_error(alice_client: Client, alice: User) -> None:
    early, late = make_job(alice, chunks=1), make_job(alice, chunks=1)
    set_times(early, created=datetime(2024, 3, 1, tzinfo=UTC))
    set_times(late, created=datetime(2024, 3, 20, tzinfo=UTC))
    response = alice_client.get(
        "/history/", {"created_from": "2024-03-10", "created_to": "2024-03-05"}
    )
    page = response.content.decode()
    assert "Must be on or after the “from” date (2024-03-10)." in page
    assert 'id="id_created_to_error"' in page
    assert 'aria-invalid="true"' in page
    # The refused "to" date filters nothing; the valid "from" date still does.
    assert listed(response) == [late.pk]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("status", "bogus"),
        ("kind", "nope"),
        ("sort", "price"),
        ("created_from", "yesterday"),
        ("created_to", "2024-02-30"),
        ("q", "x" * 201),
    ],
)
def test_invalid_filter_values_show_an_error_and_filter_nothing(
    alice_client: Client, alice: User, name: str, value: str
) -> None:
    jobs = [make_job(alice, chunks=1), make_job(alice, "primes", start=0, stop=100, chunks=1)]
    response = alice_client.get("/history/", {name: value})
    assert f'id="id_{name}_error"' in response.content.decode()
    assert listed(response) == [jobs[1].pk, jobs[0].pk]


@pytest.mark.parametrize(
    "query",
    [
        {"q": "a\x00b"},
        {"owner": "a\x00b"},
        {"created_from": "0001-01-01", "created_to": "9999-12-31"},
        {"page": "-1"},
    ],
)
def test_odd_filter_values_never_fail_the_page(
    staff_client: Client, alice: User, query: dict[str, str]
) -> None:
    job = make_job(alice, chunks=1)
    assert listed(staff_client.get("/history/", query)) == [job.pk]
    assert staff_client.get("/history/compare/", {"kind": "burn", **query}).status_code == 200


def test_a_bad_page_number_shows_a_page(alice_client: Client, alice: User) -> None:
    job = make_job(alice, chunks=1)
    assert listed(alice_client.get("/history/", {"page": "lots"})) == [job.pk]
    assert listed(alice_client.get("/history/", {"page": "999"})) == [job.pk]


def test_pages_hold_25_jobs_and_keep_the_filters(
    alice_client: Client, alice: User, settings: Any
) -> None:
    settings.COREBOARD_QUOTA_ACTIVE_JOBS = 100
    jobs = [make_job(alice, chunks=1) for _ in range(27)]
    make_job(alice, "primes", start=0, stop=100, chunks=1)
    first = alice_client.get("/history/", {"kind": "burn"})
    assert len(listed(first)) == 25
    assert "kind=burn&amp;page=2" in first.content.decode()
    assert "Page 1 of 2 (27 jobs)" in first.content.decode()
    second = alice_client.get("/history/", {"kind": "burn", "page": "2"})
    assert listed(second) == [jobs[1].pk, jobs[0].pk]


def test_the_page_costs_the_same_queries_for_any_number_of_owners(
    staff_client: Client,
    alice: User,
    bob: User,
    mallory: User,
    django_assert_max_num_queries: Any,
) -> None:
    for owner in (alice, bob, mallory):
        make_job(owner, chunks=1)
    # session, user, count, the page's ids, its rows: owners come with their jobs.
    with django_assert_max_num_queries(5):
        assert len(listed(staff_client.get("/history/"))) == 3


def test_filters_have_labels_and_a_button(alice_client: Client) -> None:
    page = alice_client.get("/history/").content.decode()
    for name in ("q", "status", "kind", "created_from", "created_to", "sort"):
        assert f'<label for="id_{name}">' in page
    assert '<button type="submit">Filter</button>' in page


# --- owners and staff ------------------------------------------------------------------------


def test_staff_see_everybody_and_filter_by_owner(
    staff_client: Client, alice: User, bob: User
) -> None:
    alices, bobs = make_job(alice, chunks=1), make_job(bob, chunks=1)
    assert listed(staff_client.get("/history/")) == [bobs.pk, alices.pk]
    assert listed(staff_client.get("/history/", {"owner": "alice"})) == [alices.pk]
    page = staff_client.get("/history/").content.decode()
    assert '<label for="id_owner">' in page


def test_staff_owner_filter_names_an_unknown_user(staff_client: Client, alice: User) -> None:
    job = make_job(alice, chunks=1)
    response = staff_client.get("/history/", {"owner": "nobody"})
    assert "No user named “nobody”." in response.content.decode()
    assert listed(response) == [job.pk]


def test_others_have_no_owner_filter_and_cannot_use_one(
    alice_client: Client, alice: User, bob: User
) -> None:
    mine = make_job(alice, chunks=1)
    make_job(bob, chunks=1)
    response = alice_client.get("/history/", {"owner": "bob"})
    assert 'name="owner"' not in response.content.decode()
    assert listed(response) == [mine.pk]


def test_mallory_sees_nothing_of_alices(alice: User, mallory: User) -> None:
    make_job(alice, chunks=1)
    client = client_for(mallory)
    assert listed(client.get("/history/")) == []
    assert listed(client.get("/history/", {"owner": "alice", "kind": "burn"})) == []


# --- sorting ---------------------------------------------------------------------------------


@pytest.fixture
def timed_jobs(alice: User) -> dict[str, Job]:
    """Created oldest to newest: slow, fast, pending (no duration), medium, instant."""
    jobs = {
        name: make_job(alice, chunks=1) for name in ("slow", "fast", "pending", "medium", "instant")
    }
    set_times(jobs["slow"], created=T0, seconds=30, cpu=60)  # speedup 2
    set_times(jobs["fast"], created=T0 + timedelta(hours=1), seconds=5, cpu=20)  # 4
    set_times(jobs["pending"], created=T0 + timedelta(hours=2), status=Job.Status.PENDING)
    set_times(jobs["medium"], created=T0 + timedelta(hours=3), seconds=10, cpu=10)  # 1
    # Started and finished in the same instant: a duration of 0 has no speedup.
    set_times(jobs["instant"], created=T0 + timedelta(hours=4), seconds=0, cpu=0)
    return jobs


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        (None, ["instant", "medium", "pending", "fast", "slow"]),
        ("-created", ["instant", "medium", "pending", "fast", "slow"]),
        ("created", ["slow", "fast", "pending", "medium", "instant"]),
        ("duration", ["instant", "fast", "medium", "slow", "pending"]),
        ("-duration", ["slow", "medium", "fast", "instant", "pending"]),
        ("speedup", ["medium", "slow", "fast", "instant", "pending"]),
        ("-speedup", ["fast", "slow", "medium", "instant", "pending"]),
    ],
)
def test_sort_orders_put_missing_durations_last(
    alice_client: Client, timed_jobs: dict[str, Job], sort: str | None, expected: list[str]
) -> None:
    response = alice_client.get("/history/", {"sort": sort} if sort else {})
    assert listed(response) == [timed_jobs[name].pk for name in expected]


def test_column_headers_sort_and_say_how(alice_client: Client, timed_jobs: dict[str, Job]) -> None:
    page = alice_client.get("/history/", {"kind": "burn", "sort": "-speedup"}).content.decode()
    assert '<th scope="col" aria-sort="descending"><a class="sort sort-descending" ' in page
    assert 'href="?kind=burn&amp;sort=speedup">Speedup' in page
    assert 'href="?kind=burn&amp;sort=-duration">Wall' in page


def test_sort_by_peak_memory_puts_unmeasured_jobs_last(
    alice_client: Client, timed_jobs: dict[str, Job]
) -> None:
    mib = 1024 * 1024
    for name, peak in (("slow", 300 * mib), ("fast", 2 * 1024 * mib), ("medium", 512 * mib)):
        Job.objects.filter(pk=timed_jobs[name].pk).update(peak_rss=peak)
    pks = {job.pk: name for name, job in timed_jobs.items()}
    most = alice_client.get("/history/", {"sort": "-memory"})
    assert [pks[pk] for pk in listed(most)] == ["fast", "medium", "slow", "instant", "pending"]
    least = alice_client.get("/history/", {"sort": "memory"})
    assert [pks[pk] for pk in listed(least)] == ["slow", "medium", "fast", "instant", "pending"]
    page = most.content.decode()
    assert 'href="?sort=memory">Peak memory</a>' in page
    assert '<th scope="col" aria-sort="descending"><a class="sort sort-descending" ' in page
    assert "<td>2.0 GiB</td>" in page
    assert "<td>512 MiB</td>" in page
    assert re.search(r'<option value="-memory"[^>]*>Most memory first</option>', page)


# --- CSV -------------------------------------------------------------------------------------


def test_csv_export_has_every_column(alice_client: Client, alice: User) -> None:
    job = make_job(alice, "primes", start=0, stop=500, chunks=2)
    set_times(job, created=T0, seconds=4, cpu=6)
    for chunk in job.chunks.all():
        Chunk.objects.filter(pk=chunk.pk).update(status=Chunk.Status.DONE, pid=10 + chunk.index)
    job.refresh_from_db()
    figures_settle(job)
    response = alice_client.get("/history/export.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="coreboard-history.csv"'
    [row] = csv_rows(response)
    assert row == {
        "id": str(job.pk),
        "kind": "primes",
        "owner": "alice",
        "status": "succeeded",
        "created_at": "2024-03-10T12:00:00+00:00",
        "started_at": "2024-03-10T12:00:01+00:00",
        "finished_at": "2024-03-10T12:00:05+00:00",
        "wall_seconds": "4",
        "cpu_seconds": "6",
        "speedup": "1.5",
        "speedup_baseline": "cpu",
        "parallelism_achieved": "1.5",
        "processes_used": "2",
        "efficiency": "0.75",
        "total_chunks": "2",
        "done_chunks": "0",
        "failed_chunks": "0",
        "peak_rss": "",
        "params": row["params"],
    }
    assert json.loads(row["params"]) == {"start": 0, "stop": 500, "chunks": 2}


def test_csv_export_applies_filters_and_sort(
    alice_client: Client, alice: User, timed_jobs: dict[str, Job]
) -> None:
    make_job(alice, "primes", start=0, stop=100, chunks=1)
    rows = csv_rows(alice_client.get("/history/export.csv", {"kind": "burn", "sort": "duration"}))
    expected = ["instant", "fast", "medium", "slow", "pending"]
    assert [row["id"] for row in rows] == [str(timed_jobs[name].pk) for name in expected]
    assert rows[-1]["wall_seconds"] == rows[-1]["speedup"] == ""
    searched = csv_rows(alice_client.get("/history/export.csv", {"q": str(timed_jobs["fast"].pk)}))
    assert [row["id"] for row in searched] == [str(timed_jobs["fast"].pk)]


def test_csv_export_holds_only_my_jobs(alice_client: Client, alice: User, bob: User) -> None:
    mine = make_job(alice, chunks=1)
    make_job(bob, chunks=1)
    rows = csv_rows(alice_client.get("/history/export.csv", {"owner": "bob"}))
    assert [row["id"] for row in rows] == [str(mine.pk)]


def test_staff_csv_export_filters_by_owner(staff_client: Client, alice: User, bob: User) -> None:
    make_job(alice, chunks=1)
    bobs = make_job(bob, chunks=1)
    assert len(csv_rows(staff_client.get("/history/export.csv"))) == 2
    rows = csv_rows(staff_client.get("/history/export.csv", {"owner": "bob"}))
    assert [(row["id"], row["owner"]) for row in rows] == [(str(bobs.pk), "bob")]


@pytest.mark.parametrize("username", ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tx"])
def test_csv_export_defuses_formulas(
    staff_client: Client, django_user_model: type[User], username: str
) -> None:
    make_job(django_user_model.objects.create_user(username), chunks=1)
    [row] = csv_rows(staff_client.get("/history/export.csv"))
    assert row["owner"] == f"'{username}"


def test_csv_export_refuses_invalid_filters(alice_client: Client, alice: User) -> None:
    response = alice_client.get(
        "/history/export.csv", {"status": "bogus", "created_from": "2024-03-10"}
    )
    assert response.status_code == 400
    assert response.content.decode().startswith("status: Select a valid choice.")


def test_csv_export_streams_under_asgi(alice: User, bob: User) -> None:
    jobs = [make_job(alice, chunks=1) for _ in range(3)]
    make_job(bob, chunks=1)

    async def download() -> tuple[bool, str]:
        client = AsyncClient()
        await client.aforce_login(alice)
        response = await client.get("/history/export.csv")
        assert isinstance(response, StreamingHttpResponse)
        body = b"".join([piece async for piece in response])
        return response.is_async, body.decode()

    is_async, text = async_to_sync(download)()
    assert is_async
    ids = [row["id"] for row in csv.DictReader(io.StringIO(text))]
    assert ids == [str(job.pk) for job in reversed(jobs)]


def test_history_page_links_export_and_compare_with_its_valid_filters(
    alice_client: Client, alice: User
) -> None:
    make_job(alice, chunks=1)
    page = alice_client.get(
        "/history/", {"kind": "burn", "status": "bogus", "sort": "speedup", "page": "1"}
    ).content.decode()
    assert 'href="/history/export.csv?kind=burn&amp;sort=speedup"' in page
    assert 'href="/history/compare/?kind=burn">Compare Burn CPU runs' in page
    assert "/history/compare/?" not in alice_client.get("/history/").content.decode()


# --- compare ---------------------------------------------------------------------------------


def test_compare_charts_succeeded_runs_of_one_kind_oldest_first(
    alice_client: Client, alice: User
) -> None:
    runs = [make_job(alice, chunks=1) for _ in range(3)]
    set_times(runs[0], created=T0 + timedelta(hours=2), seconds=10, cpu=20)
    set_times(runs[1], created=T0, seconds=4, cpu=4)
    set_times(runs[2], created=T0 + timedelta(hours=1), seconds=8, cpu=8, status="failed")
    set_times(make_job(alice, "primes", start=0, stop=100, chunks=1), created=T0, seconds=1, cpu=1)
    response = alice_client.get("/history/compare/", {"kind": "burn"})
    data = compared(response)
    assert [(run["id"], run["wall_seconds"], run["speedup"]) for run in data] == [
        (runs[1].pk, 4.0, 1.0),
        (runs[0].pk, 10.0, 2.0),
    ]
    page = response.content.decode()
    assert 'role="img"' in page
    assert 'aria-label="Line chart of duration' in page
    assert "vendor/chart.js/chart.umd.min.js" in page
    assert "jobs/compare.mjs" in page
    assert len(re.findall(r'<tr data-job-id="\d+"', page)) == 2


def test_compare_shows_only_runs_the_person_may_see(
    alice: User, bob: User, staff: User, mallory: User
) -> None:
    alices, bobs = make_job(alice, chunks=1), make_job(bob, chunks=1)
    set_times(alices, created=T0, seconds=2, cpu=2)
    set_times(bobs, created=T0 + timedelta(hours=1), seconds=2, cpu=2)

    def ids(user: User, **query: str) -> list[int]:
        return [run["id"] for run in compared(client_for(user).get("/history/compare/", query))]

    assert ids(alice, kind="burn") == [alices.pk]
    assert ids(alice, kind="burn", owner="bob") == [alices.pk]
    assert ids(mallory, kind="burn") == []
    assert ids(staff, kind="burn") == [alices.pk, bobs.pk]
    assert ids(staff, kind="burn", owner="bob") == [bobs.pk]
    assert (
        "No succeeded Burn CPU runs"
        in client_for(mallory).get("/history/compare/", {"kind": "burn"}).content.decode()
    )


def test_compare_keeps_the_latest_runs(alice: User) -> None:
    runs = [make_job(alice, chunks=1) for _ in range(4)]
    for hour, job in enumerate(runs):
        set_times(job, created=T0 + timedelta(hours=hour), seconds=1, cpu=1)
    latest = selectors.job_runs_compared(user=alice, kind="burn", limit=2)
    assert [run["id"] for run in latest] == [runs[2].pk, runs[3].pk]


def test_compare_without_a_kind_asks_for_one(alice_client: Client) -> None:
    page = alice_client.get("/history/compare/").content.decode()
    assert '<label for="id_kind">' in page
    assert "errorlist" not in page
    bad = alice_client.get("/history/compare/", {"kind": "nope"})
    assert bad.status_code == 200
    assert 'id="id_kind_error"' in bad.content.decode()
    assert "compare-runs" not in bad.content.decode()


def test_search_by_the_name_of_the_uploaded_file(alice_client: Client, alice: User) -> None:
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("moby-dick.txt", b"call me ishmael")
    )
    wanted = make_job(alice, "wordcount", upload=upload.pk, chunks=1)
    make_job(alice, chunks=1)
    assert listed(alice_client.get("/history/", {"q": "moby"})) == [wanted.pk]


# --- Search through its indexes, counted up to a bound -----------------------------------------


def plan_without_sequential_scans(query: Any) -> str:
    """PostgreSQL's plan for `query` when it may not read the table through: a plan that
    still has "Seq Scan" has a condition that no index serves."""
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")  # no walk of the created index
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize(
    "q", ["primes", "PRIM", '"stop": 7771', "Stop 7771", "Count primes", "stop", "moby"]
)
def test_text_search_reads_through_the_search_indexes(staff: User, alice: User, q: str) -> None:
    upload = services.upload_create(
        owner=alice, file=SimpleUploadedFile("moby-dick.txt", b"call me ishmael")
    )
    make_job(alice, "wordcount", upload=upload.pk, chunks=1)
    make_job(alice, "primes", start=0, stop=7771, chunks=1)
    plan = plan_without_sequential_scans(selectors.job_history(user=staff, q=q))
    assert "Seq Scan" not in plan, plan
    assert "job_params_trgm" in plan, plan
    if q == "moby":
        assert "job_params_upload" in plan, plan


def test_text_search_takes_like_wildcards_literally(alice_client: Client, alice: User) -> None:
    make_job(alice, "primes", start=0, stop=5000, chunks=1)
    make_job(alice, "burn", ms=25, chunks=1)
    assert listed(alice_client.get("/history/", {"q": "50%"})) == []
    assert listed(alice_client.get("/history/", {"q": "s_op"})) == []
    assert len(listed(alice_client.get("/history/", {"q": "p: 50"}))) == 1


def test_text_search_lists_a_bounded_number_of_matches(
    alice_client: Client, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_views, "SEARCH_LISTED_MAX", 3)
    monkeypatch.setattr(history_views, "PAGE_SIZE", 2)
    jobs = [make_job(alice, "primes", start=0, stop=100 + n, chunks=1) for n in range(5)]
    first = alice_client.get("/history/", {"q": "primes"})
    assert listed(first) == [jobs[4].pk, jobs[3].pk]
    page = first.content.decode()
    assert "Page 1 of 2 (more than 3 jobs match: the first 3 are listed" in page
    assert listed(alice_client.get("/history/", {"q": "primes", "page": "9"})) == [jobs[2].pk]
    # Without a text search every job is counted.
    assert "Page 1 of 3 (5 jobs)" in alice_client.get("/history/").content.decode()
    # Nor does the bound hide a smaller number.
    assert "(1 job)" in alice_client.get("/history/", {"q": "Stop 101"}).content.decode()


# --- Exports at once, per person ---------------------------------------------------------------


@override_settings(COREBOARD_EXPORTS_PER_PERSON=2)
def test_a_person_streams_at_most_the_exports_the_setting_allows(alice: User, bob: User) -> None:
    make_job(alice, chunks=1)
    make_job(bob, chunks=1)
    alice_client, bob_client = client_for(alice), client_for(bob)
    first = alice_client.get("/history/export.csv")
    second = alice_client.get("/history/export.csv")
    assert first.status_code == second.status_code == 200
    refused = alice_client.get("/history/export.csv")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "text/plain; charset=utf-8"
    assert refused.content.decode() == (
        "You have 2 history exports streaming; at most 2 may stream at once per person "
        "(COREBOARD_EXPORTS_PER_PERSON). Try again when one has finished.\n"
    )
    # Somebody else's exports are their own.
    assert len(csv_rows(bob_client.get("/history/export.csv"))) == 1
    # One ended (read to its end, which closes it): the next one streams.
    assert len(csv_rows(first)) == 1
    assert alice_client.get("/history/export.csv").status_code == 200
    assert alice_client.get("/history/export.csv").status_code == 429
    # An export closed before a byte was read frees its slot too.
    close_unread(second)
    assert len(csv_rows(alice_client.get("/history/export.csv"))) == 1


def close_unread(response: HttpResponseBase) -> None:
    """Close a response as a server does when its client goes away, without the test
    client's request_finished, which would close the test's connection (and transaction)."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


@override_settings(COREBOARD_EXPORTS_AT_ONCE=1)
def test_exports_take_turns_to_have_their_rows_written() -> None:
    turn = services.export_turn_try()
    assert turn is not None
    assert services.export_turn_try() is None
    turn.release()
    turn.release()  # once only
    again = services.export_turn_try()
    assert again is not None
    again.release()


def test_a_large_number_reads_grouped_and_is_found_as_the_page_writes_it(
    alice_client: Client, alice: User
) -> None:
    wanted = make_job(alice, "primes", start=0, stop=40_000_000, chunks=1)
    make_job(alice, "primes", start=0, stop=100, chunks=1)
    page = alice_client.get("/history/").content.decode()
    assert "Stop 40,000,000" in page
    assert listed(alice_client.get("/history/", {"q": "Stop 40,000,000"})) == [wanted.pk]
