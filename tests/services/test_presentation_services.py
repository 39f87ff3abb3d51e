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


@pytest.mark.services
def test_tiny_chunks_are_explained(alice: User) -> None:
    job = finished(alice, chunks=40, run_s=0.002, gap_s=0.015)
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    text = " ".join(insight.notes)
    assert "Chunks averaged 2 ms of work and 15 ms of overhead each" in text
    assert "use fewer, bigger chunks" in text


@pytest.mark.services
def test_shared_cpu_is_explained_with_the_other_jobs(alice: User, bob: User) -> None:
    other = make_job(bob, chunks=1, ms=1)
    Job.objects.filter(pk=other.pk).update(status=Job.Status.RUNNING, started_at=T0)
    job = finished(alice, chunks=8, run_s=1.0, gap_s=0.01, cpu_share=0.4)
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    assert any("The CPU was shared with 1 other job" in note for note in insight.notes)


@pytest.mark.services
def test_a_good_speedup_needs_no_explanation(alice: User) -> None:
    job = finished(alice, chunks=8, run_s=1.0, gap_s=0.01)
    insight = insights.job_speedup_insight(job)
    assert insight is not None
    assert insight.notes == []


@pytest.mark.services
def test_speedup_against_own_parallelism_1_run(alice: User, bob: User) -> None:
    params = {"chunks": 8, "ms": 1000, "fail_rate": 0.0}
    single = finished(alice, chunks=8, run_s=1.0, gap_s=0.0, processes=1, parallelism=1,
                      params=params)  # fmt: skip
    finished(bob, chunks=8, run_s=1.0, gap_s=0.0, processes=1, parallelism=1, params=params)
    double = finished(alice, chunks=8, run_s=1.0, gap_s=0.0, params=params)
    insight = insights.job_speedup_insight(double)
    assert insight is not None
    assert insight.baseline is not None
    assert insight.baseline.job_id == single.pk
    assert insight.baseline.speedup == pytest.approx(2.0)
