"""Which code produced a result (issue 23, item 5), with a real worker: a job's page shows its
kind's version and the Coreboard commit, and after the kind's source is edited a rerun says
that the code changed since, on the rerun form and on the new job's page; a worker still on
the old code shows as such."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs import kinds
from jobs.engine import workers
from jobs.models import Job
from tests.processes import ServerProcess, start_celery_worker
from tests.waiting import wait_for_job

pytestmark = pytest.mark.integration

FINAL = {"succeeded", "failed", "cancelled"}
MODULE = "coreboard_kinds.versioned"

KIND = '''"""A kind whose source the test edits."""

from django import forms

from jobs.kinds import JobKind, register


class VersionedForm(forms.Form):
    chunks = forms.IntegerField(min_value=1, max_value=10, initial=2)


@register
class Versioned(JobKind):
    name = "versioned"
    label = "Versioned"
    form_class = VersionedForm

    def split(self, params):
        return [{{"i": i}} for i in range(params["chunks"])]

    def run(self, spec, progress):
        return {version}

    def combine(self, params, partials):
        return {{"version": partials[0]}}
'''


def _load_folder() -> None:
    """What a process (re)started on the kinds folder does: import its modules afresh."""
    sys.modules.pop(MODULE, None)
    kinds.unregister("versioned")
    assert kinds.load_configured() == []


@pytest.fixture
def versioned_worker(kinds_folder: Path, child_env: dict[str, str]) -> Iterator[ServerProcess]:
    (kinds_folder / "versioned.py").write_text(KIND.format(version=1))
    _load_folder()
    worker = start_celery_worker({**child_env, "COREBOARD_KINDS_DIR": str(kinds_folder)}, 1)
    yield worker
    worker.stop()
    sys.modules.pop(MODULE, None)


def _submit(client: Client, *, rerun: Job | None = None) -> Job:
    data = {"kind": "versioned", "params-chunks": "2"}
    if rerun is not None:
        data["rerun"] = str(rerun.pk)
    response = client.post("/jobs/new/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return Job.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


@pytest.mark.django_db(transaction=True)
def test_job_page_shows_kind_version_and_commit_and_rerun_says_the_code_changed(
    alice: User, alice_client: Client, kinds_folder: Path, versioned_worker: ServerProcess
) -> None:
    first = wait_for_job(_submit(alice_client).pk, until=FINAL, timeout=60)
    assert first.status == Job.Status.SUCCEEDED, first.error
    assert first.result == {"version": 1}
    old_source = kinds.version("versioned").source
    commit = workers.coreboard_commit()
    assert len(old_source) == 64
    assert commit, "this checkout's commit is known (git or REVISION)"
    # The worker ran the code the web submitted with.
    assert set(first.chunks.values_list("kind_source", "coreboard_commit")) == {
        (old_source, commit)
    }
    page = alice_client.get(f"/jobs/{first.pk}/").content.decode()
    assert f"<dt>Kind source</dt><dd>{old_source[:12]}</dd>" in page
    assert f"<dt>Coreboard commit</dt><dd>{commit[:12]}</dd>" in page
    unchanged = alice_client.get(f"/jobs/new/?rerun={first.pk}").content.decode()
    assert "code changed" not in unchanged

    # The kind is edited; this (web) process loads the new code, as `make run` restarts it.
    (kinds_folder / "versioned.py").write_text(KIND.format(version=2))
    _load_folder()
    new_source = kinds.version("versioned").source
    assert new_source != old_source

    form = alice_client.get(f"/jobs/new/?rerun={first.pk}").content.decode()
    changed = (
        f"The kind&#x27;s code changed since job #{first.pk} ran: its source was "
        f"{old_source[:12]}, now {new_source[:12]}"
    )
    assert changed in form

    # The worker has not restarted: it still runs the old code, and the rerun's page says so.
    rerun = wait_for_job(_submit(alice_client, rerun=first).pk, until=FINAL, timeout=60)
    assert rerun.status == Job.Status.SUCCEEDED, rerun.error
    assert rerun.result == {"version": 1}
    assert rerun.kind_source == new_source
    page = alice_client.get(f"/jobs/{rerun.pk}/").content.decode()
    assert changed in page
    assert f"kind source {old_source[:12]}, Coreboard {commit[:12]} (2 chunks)" in page
