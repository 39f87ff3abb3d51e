"""Trying a kind in-process: `manage.py try_kind` and the pytest helper `run_kind`."""

from __future__ import annotations

import json
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from jobs import kinds
from jobs.kinds import trial
from jobs.kinds.testing import run_kind, split_kind

pytestmark = pytest.mark.services

NOT_JSON_KIND = """
from django import forms

from jobs.kinds import JobKind, register


class SetsForm(forms.Form):
    n = forms.IntegerField(min_value=1, initial=2)


@register
class Sets(JobKind):
    name = "sets_partial"
    label = "Sets"
    form_class = SetsForm

    def split(self, params):
        return [{"i": i} for i in range(params["n"])]

    def run(self, spec, progress):
        return {"counts": [1, 2, {"seen": {spec["i"]}}]}

    def combine(self, params, partials):
        return partials
"""


def try_kind(*args: str) -> str:
    out = StringIO()
    call_command("try_kind", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_try_kind_shows_specs_times_chunks_and_prints_the_result_as_the_page_does() -> None:
    text = try_kind("primes", "--param", "start=0", "--param", "stop=1000", "-p", "chunks=4")

    assert "primes (Count primes): 4 chunks" in text
    assert 'spec[0] {"index": 0, "start": 0, "stop": 250, "params": {' in text
    assert "... 1 more" in text
    assert "chunk 4/4:" in text
    assert "Primes found: 168" in text


def test_try_kind_json_gives_the_result_and_every_chunk() -> None:
    data = json.loads(try_kind("primes", "-p", "stop=1000", "-p", "chunks=3", "--json"))

    assert data["result"] == {"count": 168}
    assert [chunk["index"] for chunk in data["chunks"]] == [0, 1, 2]
    assert data["params"] == {"start": 0, "stop": 1000, "chunks": 3}


def test_try_kind_refuses_parameters_by_field_with_exit_2() -> None:
    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("try_kind", "primes", "-p", "stop=x", "-p", "bogus=1", "--json", stdout=out)

    assert refused.value.returncode == 2
    errors = json.loads(out.getvalue())["errors"]
    assert set(errors) == {"stop", "bogus"}


def test_try_kind_names_the_key_path_of_a_partial_that_is_not_json(
    kinds_folder: Path,
) -> None:
    module = kinds_folder / "sets_partial.py"
    module.write_text(NOT_JSON_KIND)

    with pytest.raises(CommandError) as failed:
        try_kind(str(module), "-p", "n=2")

    assert failed.value.returncode == 1
    assert "partial[0]['counts'][2]['seen']: a set is not JSON" in str(failed.value)


def test_try_kind_reads_a_local_file_for_an_upload_parameter(tmp_path: Path) -> None:
    text = tmp_path / "words.txt"
    text.write_text("to be or not to be\n")

    out = try_kind("wordcount", "-p", f"upload=@{text}", "-p", "chunks=2", "--json")

    result = json.loads(out)["result"]
    assert result["total_words"] == 6


def test_try_kind_says_which_kinds_exist_when_the_name_is_unknown() -> None:
    with pytest.raises(CommandError, match=r"No kind or module called 'primez'\. Kinds: burn"):
        try_kind("primez")


def test_run_kind_runs_a_whole_job_in_one_line() -> None:
    assert run_kind("primes", start=0, stop=1000, chunks=3) == {"count": 168}
    specs = split_kind("primes", start=0, stop=100, chunks=2)
    assert [(spec["start"], spec["stop"]) for spec in specs] == [(0, 50), (50, 100)]


def test_run_kind_refuses_bad_parameters_and_values_that_are_not_json(
    kinds_folder: Path,
) -> None:
    with pytest.raises(ValidationError) as refused:
        run_kind("primes", stop=-1)
    assert "stop" in refused.value.message_dict

    (kinds_folder / "sets_partial.py").write_text(NOT_JSON_KIND)
    kind = trial.kind_resolve(str(kinds_folder / "sets_partial.py"))
    with pytest.raises(TypeError, match=r"partial\[0\]\['counts'\]\[2\]\['seen'\]"):
        run_kind(kind, n=1)


def test_results_without_a_display_read_as_a_table_of_fields() -> None:
    display = trial.result_fields_display({"estimate": 3.14159, "n": 1000, "bins": [1, 2]})

    # The same fields the job page shows (jobs.kinds.result_fields).
    assert display.figures == [("estimate", "3.14159"), ("n", "1000"), ("bins", "1, 2")]
    assert trial.display_text(display).splitlines() == [
        "estimate: 3.14159",
        "n: 1000",
        "bins: 1, 2",
    ]
    table = trial.result_fields_display({"fits": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]})
    assert (table.table_caption, table.table_columns) == ("fits", ["a", "b"])
    assert table.table_rows == [["1", "2"], ["3", "4"]]


def test_try_kind_imports_a_file_named_like_a_module_without_replacing_it(
    tmp_path: Path,
) -> None:
    import json as standard_json

    module = tmp_path / "json.py"
    module.write_text(
        NOT_JSON_KIND.replace("sets_partial", "json_named").replace(
            '{"counts": [1, 2, {"seen": {spec["i"]}}]}', 'spec["i"]'
        )
    )

    with kinds.temporary():
        data = json.loads(try_kind(str(module), "-p", "n=3", "--json"))

    assert data["kind"] == "json_named"
    assert data["result"] == [0, 1, 2]
    assert sys.modules["json"] is standard_json
