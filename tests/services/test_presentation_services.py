"""How jobs read to people, as the views' helpers and the kinds compute it: parameters,
results, speedup explained."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import kinds, services
from jobs.models import Job
from jobs.views import insights, presentation
from tests.factories import T0, finished, make_job

pytestmark = pytest.mark.django_db


# --- parameters and results ------------------------------------------------------------------


@pytest.mark.services
def test_parameters_show_form_labels_in_form_order_without_internal_keys(alice: User) -> None:
    upload = services.upload_create(owner=alice, file=SimpleUploadedFile("poem.txt", b"a b"))
    job = make_job(alice, "wordcount", top=5, chunks=2, upload=upload.pk)
    assert job.params["upload"] == upload.pk
    assert presentation.job_params_display(job) == [
        ("Upload", "poem.txt"),
        ("Chunks", "2"),
        ("Top", "5"),
    ]
    assert presentation.job_params_text(job) == "Upload poem.txt · Chunks 2 · Top 5"
    burn = make_job(alice, chunks=2, ms=30)
    assert presentation.job_params_display(burn)[1] == ("Milliseconds per chunk", "30")


@pytest.mark.services
@pytest.mark.parametrize(
    ("kind", "params", "result", "shown"),
    [
        ("primes", {"start": 0, "stop": 10_000_000, "chunks": 2}, {"count": 664579},
         ("Primes found", "664,579")),
        ("montecarlo_pi", {"samples": 1000, "chunks": 1, "seed": 1},
         {"estimate": 3.1416, "std_error": 0.0012, "inside": 785, "samples": 1000},
         ("Estimate of π", "3.1416 ± 0.0012")),
        ("hash_search", {"prefix": "x", "difficulty": 1, "chunks": 1},
         {"nonce": 42, "hash": "0abc"}, ("Nonce", "42")),
    ],
)  # fmt: skip
def test_kinds_render_their_result(
    kind: str, params: dict[str, Any], result: Any, shown: tuple[str, str]
) -> None:
    display = kinds.get(kind).result_display(params, result)
    assert display is not None
    assert shown in display.figures


@pytest.mark.services
def test_wordcount_result_is_a_table() -> None:
    result = {"total_words": 7, "distinct_words": 5, "top": [["the", 3], ["cat", 1]]}
    display = kinds.get("wordcount").result_display({"top": 2}, result)
    assert display is not None
    assert ("Words", "7") in display.figures
    assert display.table_columns == ["Rank", "Word", "Count"]
    assert display.table_rows == [["1", "the", "3"], ["2", "cat", "1"]]


@pytest.mark.services
def test_every_kind_has_defaults_worth_parallelising() -> None:
    # Measured on one core of the dev machines: each default job takes 3 to 8 s, in chunks
    # of about 0.3 s or more (see docs/using.md, Job kinds).
    for kind in kinds.all_kinds():
        form = kind.form_class()
        defaults = {name: field.initial for name, field in form.fields.items()}
        if kind.upload_fields():
            continue
        params = kind.clean_params({k: v for k, v in defaults.items() if v is not None})
        assert len(kind.split(params)) >= 8, kind.name


# --- speedup explained -----------------------------------------------------------------------
# `finished` lays chunks out on lanes (processes) with set times: every figure below follows
# from those times by hand.


def _insight(job: Job) -> insights.SpeedupInsight:
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    return insight


@pytest.mark.services
def test_tiny_chunks_advise_bigger_chunks_and_nothing_else(alice: User) -> None:
    # Two lanes of 20 chunks: 2 ms of work after 15 ms of waiting each. Wall 20 × 17 ms =
    # 0.34 s; of 2 × 0.34 s, 2 × 19 × 15 ms went between chunks, 2 × 15 ms to start-up.
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    insight = _insight(job)
    assert insight.explained
    assert [cause.key for cause in insight.causes] == ["overhead", "fixed"]
    overhead = insight.causes[0]
    assert overhead.seconds == pytest.approx(2 * 19 * 0.015)
    assert overhead.share == pytest.approx(2 * 19 * 0.015 / (2 * 0.34))
    assert "40 chunks did 2 ms of work each on average, with 15 ms between" in overhead.detail
    assert insight.advice is not None
    assert insight.advice.startswith("Use fewer, bigger chunks")


@pytest.mark.services
def test_the_tail_is_costed_per_idle_process(alice: User) -> None:
    # Three lanes, four 1 s chunks: lane 0 runs two (0-2 s), lanes 1 and 2 one each and then
    # wait 1 s each for it. Speedup 4 / 2 = 2 of 3.
    job = finished(alice, chunks=4, run_s=1.0, gap_s=0.0, processes=3, parallelism=3)
    insight = _insight(job)
    assert insight.speedup == pytest.approx(2.0)
    assert insight.causes[0].key == "tail"
    assert insight.causes[0].seconds == pytest.approx(2.0)
    assert insight.causes[0].share == pytest.approx(2.0 / 6.0)
    assert insight.advice is not None
    assert insight.advice.startswith("Even out the chunks' work")


@pytest.mark.services
def test_too_few_chunks_for_the_processes(alice: User) -> None:
    job = finished(alice, chunks=2, run_s=1.0, gap_s=0.0, processes=2, parallelism=4)
    insight = _insight(job)
    assert insight.processes == 4
    assert job.processes_used == 2
    assert insight.efficiency == pytest.approx(1.0)  # against the 2 processes it used
    assert insight.causes[0].key == "unused"
    assert insight.causes[0].seconds == pytest.approx(2 * 1.0)
    assert "It had 2 chunks for 4 processes" in insight.causes[0].detail
    assert insight.advice == insight.causes[0].advice
    assert "at least 4 chunks" in insight.advice


@pytest.mark.services
def test_shared_cpu_is_the_top_cause_and_names_the_other_jobs(alice: User, bob: User) -> None:
    other = make_job(bob, chunks=1, ms=1)
    Job.objects.filter(pk=other.pk).update(status=Job.Status.RUNNING, started_at=T0)
    job = finished(alice, chunks=8, run_s=1.0, gap_s=0.01, cpu_share=0.4)
    insight = _insight(job)
    contention = insight.causes[0]
    assert contention.key == "contention"
    assert contention.seconds == pytest.approx(8 * 0.6)
    assert "1 other job ran on the workers meanwhile" in contention.detail
    assert insight.advice is not None
    assert "cores were shared" in insight.advice


@pytest.mark.services
def test_a_good_speedup_needs_no_explanation(alice: User) -> None:
    job = finished(alice, chunks=8, run_s=1.0, gap_s=0.01)
    insight = _insight(job)
    assert not insight.explained
    assert insight.causes == []
    assert insight.advice is None


@pytest.mark.services
@pytest.mark.parametrize("status", [Job.Status.FAILED, Job.Status.CANCELLED])
def test_failed_and_cancelled_jobs_have_no_speedup_to_explain(alice: User, status: str) -> None:
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    Job.objects.filter(pk=job.pk).update(status=status)
    job.refresh_from_db()
    assert job.speedup is None
    assert insights.job_speedup_insight(job) is None


@pytest.mark.services
def test_speedup_against_own_parallelism_1_run(alice: User, bob: User) -> None:
    params = {"chunks": 8, "ms": 1000, "fail_rate": 0.0}
    single = finished(alice, chunks=8, run_s=1.0, gap_s=0.0, processes=1, parallelism=1,
                      params=params)  # fmt: skip
    finished(bob, chunks=8, run_s=1.0, gap_s=0.0, processes=1, parallelism=1, params=params)
    double = finished(alice, chunks=8, run_s=1.0, gap_s=0.0, params=params)
    insight = _insight(double)
    assert insight.baseline == "measured"
    assert insight.baseline_job_id == single.pk
    assert insight.baseline_seconds == pytest.approx(8.0)
    assert insight.speedup == pytest.approx(2.0)
    assert _insight(single).speedup == pytest.approx(1.0)
    assert _insight(single).baseline_job_id == single.pk
