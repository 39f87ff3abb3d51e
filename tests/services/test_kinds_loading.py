"""Where kinds are found (COREBOARD_JOB_KINDS, entry points, the kinds folder), what a
module that fails to import leaves behind, and the registry's temporary registration."""

from __future__ import annotations

import logging
import sys
from importlib import metadata
from pathlib import Path

import pytest

from jobs import kinds
from jobs.kinds import loading
from jobs.selectors import jobs as selectors

pytestmark = pytest.mark.services

GOOD_KIND = """
from django import forms

from jobs.kinds import JobKind, register


class CountForm(forms.Form):
    n = forms.IntegerField(min_value=1, initial=3)


@register
class Count(JobKind):
    name = "{name}"
    label = "{label}"
    form_class = CountForm

    def split(self, params):
        return [{{"i": i}} for i in range(params["n"])]

    def run(self, spec, progress):
        return spec["i"]

    def combine(self, params, partials):
        return {{"total": sum(partials)}}
"""


def kind_source(name: str, label: str = "A test kind") -> str:
    return GOOD_KIND.format(name=name, label=label)


def test_a_kinds_folder_file_is_loaded_under_a_stable_module_name(kinds_folder: Path) -> None:
    (kinds_folder / "counting.py").write_text(kind_source("counting"))
    (kinds_folder / "_helper.py").write_text("raise RuntimeError('never imported')\n")
    (kinds_folder / "notes.txt").write_text("not a module")

    assert kinds.load_configured() == []

    kind = kinds.get("counting")
    assert type(kind).__module__ == "coreboard_kinds.counting"
    assert {"primes", "wordcount"} <= {k.name for k in kinds.all_kinds()}


def test_a_package_in_the_kinds_folder_is_loaded(kinds_folder: Path) -> None:
    package = kinds_folder / "teamkinds"
    package.mkdir()
    (package / "__init__.py").write_text("from .pricing import Count\n")
    (package / "pricing.py").write_text(kind_source("pricing"))

    assert kinds.load_configured() == []
    assert type(kinds.get("pricing")).__module__ == "coreboard_kinds.teamkinds.pricing"


def test_a_broken_module_is_recorded_with_file_and_line_and_the_rest_loads(
    kinds_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (kinds_folder / "broken.py").write_text("x = 1\ndef f(:\n    pass\n")
    (kinds_folder / "raises.py").write_text("import os\n\nraise RuntimeError('no licence key')\n")
    (kinds_folder / "works.py").write_text(kind_source("works"))

    with caplog.at_level(logging.ERROR, logger="jobs.kinds.loading"):
        failures = kinds.load_configured()

    by_module = {failure["module"]: failure for failure in failures}
    broken = by_module["coreboard_kinds.broken"]
    assert (broken["file"], broken["line"], broken["error"]) == (
        str(kinds_folder / "broken.py"),
        2,
        "SyntaxError",
    )
    raises = by_module["coreboard_kinds.raises"]
    assert (raises["file"], raises["line"]) == (str(kinds_folder / "raises.py"), 3)
    assert (raises["error"], raises["message"]) == ("RuntimeError", "no licence key")
    assert "raise RuntimeError('no licence key')" in raises["traceback"]
    assert kinds.get("works").label == "A test kind"
    assert kinds.load_failures() == failures
    # One line per failure, naming the module, file:line and the exception.
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    expected = (
        f"job kind module 'coreboard_kinds.raises' (kinds folder) failed to load: "
        f"{kinds_folder}/raises.py:3: RuntimeError: no licence key"
    )
    assert expected in lines


def test_a_typo_in_coreboard_job_kinds_is_recorded_and_the_built_in_kinds_stay(
    kinds_folder: Path, settings: object
) -> None:
    settings.COREBOARD_JOB_KINDS = [*settings.BUILTIN_JOB_KINDS, "myteam.kindz"]  # type: ignore[attr-defined]

    [failure] = kinds.load_configured()

    assert failure["module"] == "myteam.kindz"
    assert failure["source"] == "COREBOARD_JOB_KINDS"
    assert (failure["file"], failure["line"]) == ("", None)
    assert failure["error"] == "ModuleNotFoundError"
    assert "(no file): ModuleNotFoundError: No module named 'myteam'" in kinds.failure_line(failure)
    assert kinds.get("primes")


def test_a_missing_dependency_names_the_line_of_the_kind_that_imports_it(
    kinds_folder: Path,
) -> None:
    (kinds_folder / "needs.py").write_text("import os\nimport no_such_dependency_xyz\n")

    [failure] = kinds.load_configured()

    assert (failure["file"], failure["line"]) == (str(kinds_folder / "needs.py"), 2)
    assert failure["message"] == "No module named 'no_such_dependency_xyz'"


def test_a_file_name_that_is_not_a_module_name_is_reported(kinds_folder: Path) -> None:
    (kinds_folder / "my-kind.py").write_text(kind_source("dashed"))

    [failure] = kinds.load_configured()

    assert "is not a Python module name" in failure["message"]
    with pytest.raises(kinds.UnknownKind):
        kinds.get("dashed")


def test_entry_points_load_a_module_or_register_a_named_class(
    kinds_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    # A class not decorated with @register: the entry point `module:Class` registers it.
    (site / "ep_plain.py").write_text(kind_source("ep_plain").replace("@register\n", ""))
    (site / "ep_module.py").write_text(kind_source("ep_module"))
    monkeypatch.syspath_prepend(str(site))
    points = [
        metadata.EntryPoint("plain", "ep_plain:Count", loading.ENTRY_POINT_GROUP),
        metadata.EntryPoint("module", "ep_module", loading.ENTRY_POINT_GROUP),
        metadata.EntryPoint("gone", "ep_gone:Count", loading.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(loading, "_entry_points", lambda: points)

    failures = kinds.load_configured()

    assert kinds.get("ep_plain").label == "A test kind"
    assert kinds.get("ep_module")
    assert [(f["module"], f["source"]) for f in failures] == [("ep_gone", "entry point gone (?)")]
    assert str(site) in {str(path) for path in kinds.kind_sources()} | {
        str(path.parent) for path in kinds.kind_sources()
    }
    for name in ("ep_plain", "ep_module"):
        sys.modules.pop(name, None)


def test_kind_sources_watch_the_kinds_folder_and_jobs_kinds(kinds_folder: Path) -> None:
    sources = kinds.kind_sources()

    assert kinds_folder.resolve() in sources
    assert Path(loading.__file__).resolve().parent in sources


def test_temporary_registration_is_undone_and_unregister_forgets() -> None:
    primes = kinds.get("primes")
    with kinds.temporary(type(primes)):
        kinds.unregister("primes")
        with pytest.raises(kinds.UnknownKind):
            kinds.get("primes")
    assert kinds.get("primes") is primes
    kinds.unregister("no_such_kind")  # nothing to forget: no error


def test_register_still_refuses_a_second_class_of_the_same_name() -> None:
    class Impostor(type(kinds.get("primes"))):  # type: ignore[misc]
        pass

    with kinds.temporary(), pytest.raises(ValueError, match="registered twice"):
        kinds.register(Impostor)


def _cluster_with_failures() -> dict[str, object]:
    failure = {
        "module": "coreboard_kinds.broken",
        "source": "kinds folder",
        "file": "/srv/kinds/broken.py",
        "line": 2,
        "error": "SyntaxError",
        "message": "invalid syntax",
        "traceback": "...",
    }
    node = {"node": "w1@host", "kind_failures": [failure]}
    return {"web": {"kind_failures": [failure]}, "nodes": [node], "processes": []}


@pytest.mark.django_db
def test_staff_see_where_kinds_failed_to_load_and_others_do_not(
    staff: object, alice: object
) -> None:
    state = _cluster_with_failures()

    for_staff = selectors.cluster_for_user(user=staff, state=state)
    for_alice = selectors.cluster_for_user(user=alice, state=state)

    [seen] = selectors.kind_failures_seen(for_staff)
    assert seen["places"] == ["web", "w1@host"]
    assert seen["file"] == "/srv/kinds/broken.py"
    assert selectors.kind_failures_seen(for_alice) == []
    assert for_alice["nodes"][0]["kind_failures"] == []


def test_a_module_that_fails_after_registering_leaves_no_kind_behind(kinds_folder: Path) -> None:
    (kinds_folder / "half.py").write_text(kind_source("half") + "\nraise ImportError('late')\n")

    [failure] = kinds.load_configured()

    assert failure["message"] == "late"
    with pytest.raises(kinds.UnknownKind):
        kinds.get("half")


def test_two_modules_registering_one_name_fail_the_second_with_its_line(
    kinds_folder: Path,
) -> None:
    (kinds_folder / "first.py").write_text(kind_source("twice", label="First"))
    (kinds_folder / "second.py").write_text(kind_source("twice", label="Second"))

    [failure] = kinds.load_configured()

    assert failure["module"] == "coreboard_kinds.second"
    assert "registered twice" in failure["message"]
    assert failure["file"] == str(kinds_folder / "second.py")
    assert kinds.get("twice").label == "First"
