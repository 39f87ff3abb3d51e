"""A kind's split runs in the web process under a CPU budget (jobs.services.splitting)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django import forms
from django.contrib.auth.models import User
from django.db import connection

from jobs import kinds, services
from jobs.kinds.base import JobKind, Params, Progress, Spec
from jobs.models import Job

pytestmark = pytest.mark.services


class SpinForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=10, initial=2)


class Spin(JobKind):
    """Breaks the contract: its split works for as long as the input is long (forever)."""

    name = "spin_split"
    label = "Spin"
    form_class = SpinForm

    def split(self, params: Params) -> Sequence[Spec]:
        total = 0
        while True:
            try:
                total += sum(range(1000))
            except Exception:  # noqa: S112 (a kind that swallows errors is still stopped)
                continue

    def run(self, spec: Spec, progress: Progress) -> int:
        return 0

    def combine(self, params: Params, partials: Sequence[Any]) -> int:
        return 0


@pytest.fixture
def spin() -> Iterator[None]:
    with kinds.temporary(Spin):
        yield


@pytest.mark.usefixtures("spin")
def test_a_split_past_its_cpu_budget_is_stopped_and_refused(alice: User, settings: Any) -> None:
    settings.COREBOARD_SPLIT_CPU_MS = 100
    started = time.thread_time()
    with pytest.raises(services.Rejected) as caught:
        services.job_create(owner=alice, kind="spin_split", params={})
    used = time.thread_time() - started
    (message,) = caught.value.errors["kind"]
    assert "more than 100 ms of CPU (COREBOARD_SPLIT_CPU_MS)" in message
    assert 0.1 <= used < 1.0
    assert not Job.objects.exists()


@pytest.mark.usefixtures("spin")
def test_a_stopped_split_leaves_nothing_armed(alice: User, settings: Any) -> None:
    settings.COREBOARD_SPLIT_CPU_MS = 20
    with pytest.raises(services.Rejected):
        services.job_plan(owner=alice, kind="spin_split", params={})
    # Work of many budgets afterwards, in the same thread, is not interrupted.
    deadline = time.thread_time() + 0.3
    while time.thread_time() < deadline:
        sum(range(1000))


def test_splits_within_the_budget_are_untouched(alice: User, settings: Any) -> None:
    settings.COREBOARD_SPLIT_CPU_MS = 1000
    plan = services.job_plan(owner=alice, kind="primes", params={"stop": 10**6, "chunks": 100_000})
    assert len(plan.specs) == 100_000


@pytest.mark.usefixtures("spin")
@pytest.mark.django_db(transaction=True)
def test_a_split_in_another_thread_is_stopped_there(alice: User, settings: Any) -> None:
    # daphne runs synchronous views in a thread of its own, not the main one.
    settings.COREBOARD_SPLIT_CPU_MS = 50

    def plan() -> str:
        try:
            services.job_plan(owner=alice, kind="spin_split", params={})
        except services.Rejected as rejected:
            return str(rejected.errors["kind"][0])
        finally:
            connection.close()
        return "planned"

    with ThreadPoolExecutor(1) as pool:
        assert "COREBOARD_SPLIT_CPU_MS" in pool.submit(plan).result(timeout=30)
