"""`manage.py try_kind NAME_OR_MODULE --param k=v ...`: a kind run in this process, serially."""

from __future__ import annotations

import json
import traceback
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.kinds import trial
from jobs.kinds.base import Spec

# Exit statuses: parameters refused (like a 400), anything else wrong with the kind.
EXIT_PARAMS = 2
EXIT_KIND = 1


class Command(BaseCommand):
    help = (
        "Run a job kind in this process, serially, on a small input: check its parameters "
        "with its form, show its chunk specs, run and time every chunk, check that every "
        "spec, partial and the result is JSON, and print the result as the job page shows "
        "it. NAME_OR_MODULE is a kind's name, a module (dotted) or a .py file; "
        "MODULE:NAME picks one kind of a module that registers several."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", metavar="NAME_OR_MODULE")
        parser.add_argument(
            "--param",
            "-p",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a parameter, as typed in the form (repeat it); an upload parameter takes "
            "a local file: NAME=@path/to/file",
        )
        parser.add_argument(
            "--chunks-shown",
            type=int,
            default=3,
            metavar="N",
            help="how many chunk specs to print (default 3)",
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object instead of text"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_json: bool = options["json"]
        try:
            kind = trial.kind_resolve(options["kind"])
        except trial.TrialError as error:
            raise CommandError(str(error), returncode=EXIT_KIND) from None
        except Exception as error:
            self.stderr.write(traceback.format_exc())
            raise CommandError(
                f"{options['kind']} failed to import: {type(error).__name__}: {error}",
                returncode=EXIT_KIND,
            ) from None
        try:
            params, files = trial.params_parse(kind, options["param"])
            clean = trial.params_clean(kind, params, files)
        except ValidationError as error:
            self._params_refused(error, as_json)
            raise CommandError("Parameters refused.", returncode=EXIT_PARAMS) from None
        shown = max(options["chunks_shown"], 0)

        def on_specs(specs: list[Spec]) -> None:
            if as_json:
                return
            self.stdout.write(f"{kind.name} ({kind.label}): {len(specs)} chunks")
            for index, spec in enumerate(specs[:shown]):
                self.stdout.write(f"  spec[{index}] {json.dumps(spec)}")
            if len(specs) > shown:
                self.stdout.write(f"  ... {len(specs) - shown} more")

        def on_chunk(run: trial.ChunkRun, count: int) -> None:
            if not as_json:
                self.stdout.write(
                    f"chunk {run.index + 1}/{count}: {run.seconds:.3f} s"
                    f" ({run.progress_calls} progress calls)"
                )

        try:
            with trial.uploads_from(files):
                result = trial.trial_run(kind, clean, on_specs=on_specs, on_chunk=on_chunk)
        except trial.NotJSONValue as error:
            raise CommandError(f"{kind.name}: not JSON: {error}", returncode=EXIT_KIND) from None
        except Exception as error:
            self.stderr.write(traceback.format_exc())
            raise CommandError(
                f"{kind.name} raised {type(error).__name__}: {error}", returncode=EXIT_KIND
            ) from None
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "kind": kind.name,
                        "params": result.params,
                        "chunks": [
                            {"index": run.index, "seconds": round(run.seconds, 6)}
                            for run in result.chunks
                        ],
                        "chunk_count": len(result.specs),
                        "finished_early_at": result.finished_early_at,
                        "result": result.result,
                    }
                )
            )
            return
        if result.finished_early_at is not None:
            self.stdout.write(
                f"chunk {result.finished_early_at + 1} finished the job early (finishes_job)"
            )
        self.stdout.write(f"all chunks: {result.seconds:.3f} s in this one process\n")
        self.stdout.write("Result")
        self.stdout.write(trial.display_text(result.display) if result.display else "")

    def _params_refused(self, error: ValidationError, as_json: bool) -> None:
        errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
        if as_json:
            self.stdout.write(json.dumps({"errors": errors}))
            return
        for name, messages in errors.items():
            for message in messages:
                self.stderr.write(f"{name}: {message}")
