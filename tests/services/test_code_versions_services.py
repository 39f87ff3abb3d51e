"""The code version of a kind and of a job (issue 23, item 5): a stable digest of the kind's
own source taken when it is registered, its distribution's version, and what the web and
each worker stamp on the job and its chunks."""

from __future__ import annotations

import sys
from pathlib import Path

import django
import pytest
from django.contrib.auth.models import User

from jobs import kinds
from jobs.engine import chunks, workers
from jobs.kinds import versions
from jobs.models import Chunk, Job
from jobs.selectors import jobs as selectors
from jobs.views import presentation
from tests.factories import claim_one, complete, make_job, start

pytestmark = pytest.mark.services

KIND = """from django import forms
from jobs.kinds import JobKind, register
{helper_import}

class F(forms.Form):
    n = forms.IntegerField(initial=1)


@register
class Versioned(JobKind):
    name = "versioned"
    label = "Versioned"
    form_class = F

    def split(self, params):
        return [{{}}]

    def run(self, spec, progress):
        return {value}

    def combine(self, params, partials):
        return {{}}
"""


def _load() -> kinds.KindVersion:
    for name in [n for n in sys.modules if n.startswith("coreboard_kinds.")]:
        del sys.modules[name]
    kinds.unregister("versioned")
    assert kinds.load_configured() == []
    return kinds.version("versioned")


def test_digest_is_taken_at_registration_and_changes_with_the_source(kinds_folder: Path) -> None:
    path = kinds_folder / "versioned.py"
    path.write_text(KIND.format(helper_import="", value=1))
    first = _load()
    # Edited on disk, not reloaded: the process still reports (and runs) what it loaded.
    path.write_text(KIND.format(helper_import="", value=2))
    assert kinds.version("versioned") == first
    second = _load()

    assert len(first.source) == 64
    assert second.source != first.source
    assert first.package == ""  # a kinds folder is no installed package
    path.write_text(KIND.format(helper_import="", value=1))
    assert _load() == first  # stable: the same text, the same digest


def test_same_code_in_another_folder_has_the_same_digest(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "kind.py", tmp_path / "b" / "kind.py"
    for path in (one, two):
        path.parent.mkdir()
        path.write_text("x = 1\n")
    assert versions.source_digest([one]) == versions.source_digest([two])
    assert versions.source_digest([]) == ""
    assert versions.source_digest([tmp_path / "missing.py"]) == ""


def test_a_kinds_folder_package_is_digested_whole(kinds_folder: Path) -> None:
    package = kinds_folder / "teampkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import kind  # noqa\n")
    (package / "helper.py").write_text("FACTOR = 1\n")
    (package / "kind.py").write_text(
        KIND.format(helper_import="from .helper import FACTOR", value="FACTOR")
    )
    before = _load()
    (package / "helper.py").write_text("FACTOR = 2\n")

    assert _load().source != before.source


def test_a_built_in_kind_is_digested_by_its_own_module() -> None:
    burn = kinds.get("burn")
    expected = versions.source_digest([Path(sys.modules[type(burn).__module__].__file__ or "")])
    assert kinds.version("burn").source == expected != ""
    assert kinds.version("burn").package == versions.BUILT_IN


def test_package_version_names_the_installed_distribution() -> None:
    assert versions.package_version("django.forms").lower() == f"django {django.__version__}"
    assert versions.package_version("coreboard_kinds.anything") == ""


@pytest.mark.django_db
def test_job_create_stamps_the_web_processes_code(alice: User) -> None:
    job = make_job(alice)
    version = kinds.version("burn")

    assert (job.kind_package, job.kind_source) == (version.package, version.source)
    assert job.coreboard_commit == workers.coreboard_commit()


@pytest.mark.django_db
def test_a_claim_stamps_the_code_of_the_claiming_process(alice: User) -> None:
    job = make_job(alice, chunks=2)
    start(job)
    old = chunks.Claimer(
        process="old@host|1|boot", worker="old", pid=1, kind_source="a" * 64, coreboard_commit="c1"
    )
    new = chunks.Claimer(
        process="new@host|2|boot", worker="new", pid=2, kind_source="b" * 64, coreboard_commit="c2"
    )
    for claimer in (old, new):
        (claimed,) = chunks.chunks_claim(job_id=job.pk, claimer=claimer, limit=1)
        complete(job, claimed)

    code = selectors.job_code(job)

    assert sorted((e["kind_source"], e["coreboard_commit"], e["chunks"]) for e in code["ran"]) == [
        ("a" * 64, "c1", 1),
        ("b" * 64, "c2", 1),
    ]
    # Nodes that differed: the page lists each, and the job's source is the one submitted.
    rows = dict(presentation.job_code_display(job, code))
    assert "Ran with" in rows
    assert selectors.job_kind_source_ran(job) == job.kind_source
    # Finishing stored it: lists read the job's row, not its chunks.
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert job.code_ran == code["ran"]
    Chunk.objects.filter(job=job).update(kind_source="changed later")
    assert selectors.job_code(job)["ran"] == code["ran"]


@pytest.mark.django_db
def test_code_changes_name_what_changed_and_say_unknown_for_old_jobs(alice: User) -> None:
    earlier = make_job(alice)
    start(earlier)
    complete(earlier, claim_one(earlier))
    Job.objects.filter(pk=earlier.pk).update(coreboard_commit="0" * 12)
    earlier.refresh_from_db()
    source = kinds.version("burn").source

    assert presentation.code_changes(earlier=earlier, earlier_source=source, now=None) == [
        f"Coreboard itself changed since job #{earlier.pk}: commit 000000000000 then, "
        f"{workers.coreboard_commit()[:12]} now."
    ]
    changed = presentation.code_changes(earlier=earlier, earlier_source="f" * 64)
    assert changed[0].startswith(f"The kind's code changed since job #{earlier.pk} ran")
    unknown = presentation.code_changes(earlier=earlier, earlier_source="")
    assert unknown == [
        f"Job #{earlier.pk} ran before code versions were recorded: whether its kind's code "
        "changed since is unknown."
    ]
