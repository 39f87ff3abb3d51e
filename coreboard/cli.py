"""`coreboard`: submit, watch and manage Coreboard jobs from a terminal.

The server comes from --url, COREBOARD_URL or ~/.config/coreboard/config.toml (`url =
"..."`; COREBOARD_CONFIG names another); the token from COREBOARD_TOKEN, a file named by
--token-file or COREBOARD_TOKEN_FILE, or the config (`token = "..."` or `token_file =
"..."`), never from the command line, which every user of the machine can read (`ps`). A
config or token file that others can read gets a warning with the chmod that fixes it.
Global options (--url, --token-file, --json) go before or after the command. Exit codes: 0 success
(for `watch` and `submit --wait`: the job succeeded), 1 the job failed or was cancelled or
the server refused, 2 bad usage.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from coreboard.client import (
    ApiError,
    Client,
    ConfigError,
    InsecureCredentialsWarning,
    read_token_file,
)

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
# A job's priorities, lowest first (the server's jobs.options.PRIORITY_NAMES; a test checks).
PRIORITIES = ("low", "normal", "high", "urgent")

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


class ChunksPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} chunks/s" if speed else "- chunks/s")


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v`: the value as JSON when it parses (numbers, true, null), else as text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="--param")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def suggested_params(client: Client, kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """Values for the parameters left out: the kind's default, or its form's initial value.

    Typing every parameter of a kind at a prompt is tedious; the browser form starts from
    these same values. An unknown kind is left for the server to refuse.
    """
    for found in client.kinds():
        if found["name"] == kind:
            properties = found["params_schema"]["properties"]
            return {
                name: field.get("default", field.get("example"))
                for name, field in properties.items()
                if name not in given and field.get("default", field.get("example")) is not None
            }
    return {}


@contextmanager
def _friendly_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as error:
        _fail(str(error))
        sys.exit(2)
    except ApiError as error:
        _fail(str(error))
        sys.exit(1)
    except OSError as error:  # connection refused, DNS, unreadable file
        _fail(str(error))
        sys.exit(1)
    except httpx.HTTPError as error:  # timeouts, broken connections
        _fail(f"{type(error).__name__}: {error}")
        sys.exit(1)
    except KeyboardInterrupt:
        errors.print("interrupted (a job keeps running on the server)")
        sys.exit(130)


def _say(text: str) -> None:
    """Print data as it is: no rich markup (results and errors may contain brackets), and
    not wrapped at the terminal's width (a path or a result cut by a newline breaks a
    script that reads it, or a copy and paste)."""
    console.print(text, markup=False, soft_wrap=True)


def _fail(text: str) -> None:
    errors.print(Text.assemble(("error: ", "red"), text), soft_wrap=True)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _summary(job: dict[str, Any]) -> str:
    priority = job.get("priority", "normal")
    return (
        f"job {job['id']} ({job['kind']}): {job['status']}, "
        f"{job['done_chunks']}/{job['total_chunks']} chunks"
        + ("" if priority == "normal" else f", {priority} priority")
    )


def _finish(job: dict[str, Any], as_json: bool) -> None:
    """Print how a job ended and exit: 0 only when it succeeded."""
    if as_json:
        _print_json(job)
    else:
        _say(_summary(job))
        if job["status"] == "succeeded":
            _say(f"result: {json.dumps(job['result'], sort_keys=True)}")
            if job.get("result_file"):
                _say(f"result file: {job['result_file']} (coreboard result --output)")
        if job["error"]:
            _fail(job["error"].strip().splitlines()[-1])
        if job.get("wall_seconds") is not None:
            _say(_figures(job))
    sys.exit(0 if job["status"] == "succeeded" else 1)


# What a job's speedup was measured against (the API's `speedup_baseline`).
_BASELINES = {
    "measured": "against a measured parallelism-1 run",
    "cpu": "estimated from the chunks' CPU time",
}


def _speedup_text(job: dict[str, Any], *, short: bool = False) -> str:
    speedup = job.get("speedup")
    if speedup is None:
        return ""
    baseline = job.get("speedup_baseline")
    if short:
        return f"{speedup:.2f}x" + (" (measured)" if baseline == "measured" else "")
    against = _BASELINES.get(baseline or "", "")
    if baseline == "measured" and job.get("baseline_job") not in (None, job["id"]):
        against += f", job {job['baseline_job']}"
    return f"{speedup:.2f}x" + (f" ({against})" if against else "")


def _figures(job: dict[str, Any]) -> str:
    """A finished job's figures on one line, as the API defines them."""
    parts = [f"wall {job['wall_seconds']:.2f} s", f"CPU {job['cpu_seconds']:.2f} s"]
    if job.get("speedup") is not None:
        parts.append(f"speedup {_speedup_text(job)}")
    if job.get("parallelism_achieved") is not None:
        parts.append(f"parallelism achieved {job['parallelism_achieved']:.2f}")
    if job.get("efficiency") is not None:
        used = job.get("processes_used")
        parts.append(f"efficiency {job['efficiency']:.0%}" + (f" on {used}" if used else ""))
    return ", ".join(parts)


def _watch(client: Client, job_id: int, as_json: bool) -> None:
    if as_json or not console.is_terminal:
        # No bar for scripts and logs: one line per change of status or progress.
        last: tuple[Any, ...] = ()
        for state in client.watch(job_id):
            now = (state["status"], state["done_chunks"])
            if not as_json and now != last:
                _say(_summary(state))
            last = now
    else:
        columns = (
            TextColumn("job {task.fields[job_id]} [bold]{task.fields[status]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            ChunksPerSecond(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("", total=None, job_id=job_id, status="…")
            for state in client.watch(job_id):
                progress.update(
                    task,
                    total=state["total_chunks"] or None,
                    completed=state["done_chunks"],
                    status=state["status"],
                )
    _finish(client.job(job_id), as_json)


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """Keep a global option's value where every command's context finds it (`ctx.meta` is
    shared by the group and its command), whichever side of the command it was given on."""

    def callback(ctx: click.Context, _: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            ctx.meta[f"coreboard.{name}"] = value

    return callback


def _refuse_token(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--token is no longer accepted: a command's arguments are visible to every user "
            "of this machine (`ps`) and stay in the shell's history. Set COREBOARD_TOKEN, or "
            "put the token in a file only you can read (chmod 600) and name it with "
            '--token-file FILE or COREBOARD_TOKEN_FILE, or write `token = "..."` in the '
            "config file.",
            ctx,
        )


# Accepted before the command and after it (`coreboard --json list`, `coreboard list --json`).
GLOBAL_OPTIONS = (
    click.option(
        "--url",
        expose_value=False,
        callback=_remember("url"),
        help="Server, e.g. http://127.0.0.1:8000 (else COREBOARD_URL, else the config's url).",
    ),
    click.option(
        "--token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember("token_file"),
        help="A file holding the API token (else COREBOARD_TOKEN, COREBOARD_TOKEN_FILE, "
        "the config's token or token_file).",
    ),
    click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_remember("json"),
        help="Machine-readable JSON output.",
    ),
    # Refused with the reason and what to do instead (it put the token in `ps`).
    click.option("--token", hidden=True, expose_value=False, callback=_refuse_token),
)

F = TypeVar("F", bound=Callable[..., Any])


def global_options(command: F) -> F:
    for option in reversed(GLOBAL_OPTIONS):
        command = option(command)
    return command


@click.group()
@global_options
@click.version_option(package_name="coreboard")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Run CPU-heavy jobs on a Coreboard server and watch them finish."""

    def make_client() -> Client:
        with _friendly_errors(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InsecureCredentialsWarning)
            token_file = ctx.meta.get("coreboard.token_file")
            client = Client(
                ctx.meta.get("coreboard.url"),
                read_token_file(token_file) if token_file else None,
            )
        for warning in caught:
            # Not wrapped: the chmod it gives is copied whole.
            message = Text.assemble(("warning: ", "yellow"), str(warning.message))
            errors.print(message, soft_wrap=True)
        return ctx.with_resource(client)

    ctx.obj = {"client": make_client}


def _context(ctx: click.Context) -> tuple[Client, bool]:
    make: Callable[[], Client] = ctx.obj["client"]
    return make(), bool(ctx.meta.get("coreboard.json"))


@main.command()
@global_options
@click.pass_context
def kinds(ctx: click.Context) -> None:
    """The job kinds and their parameters."""
    client, as_json = _context(ctx)
    with _friendly_errors():
        found = client.kinds()
    if as_json:
        _print_json(found)
        return
    for kind in found:
        _say(f"{kind['name']} - {kind['label']}: {kind['description']}")
        schema = kind["params_schema"]
        for name, field in schema["properties"].items():
            limits = ", ".join(
                f"{word} {field[key]}"
                for key, word in (("minimum", "min"), ("maximum", "max"))
                if key in field
            )
            default = field.get("default", field.get("example"))
            required = "" if name in schema.get("required", ()) else " (optional)"
            help_text = field.get("description", "")
            # A choice has no type in JSON Schema, only its values.
            kind_of = field.get("type") or " | ".join(json.dumps(v) for v in field.get("enum", ()))
            _say(
                f"  --param {name}=…  {kind_of}{required}"
                + (f" [{limits}]" if limits else "")
                + (f" e.g. {default}" if default is not None else "")
                + (f" - {help_text}" if help_text else "")
            )


@main.command()
@global_options
@click.argument("kind")
@click.option("--param", "-p", "params", multiple=True, help="A parameter, NAME=VALUE.")
@click.option("--parallelism", type=click.IntRange(min=1), help="Most chunks in flight.")
@click.option(
    "--chunk-time-limit",
    "chunk_time_limit_s",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Stop a chunk (its process) after this long; at most the kind's limit.",
)
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES),
    help="Which waiting work the workers take first (default normal; urgent needs a "
    "permission staff grant).",
)
@click.option("--wait", is_flag=True, help="Watch the job until it ends.")
@click.pass_context
def submit(
    ctx: click.Context,
    kind: str,
    params: tuple[str, ...],
    parallelism: int | None,
    chunk_time_limit_s: int | None,
    priority: str | None,
    wait: bool,
) -> None:
    """Create a job of KIND.

    E.g. `coreboard submit primes -p stop=10000000 -p chunks=8`.
    """
    values = dict(parse_param(text) for text in params)
    client, as_json = _context(ctx)
    with _friendly_errors():
        for name, value in suggested_params(client, kind, values).items():
            errors.print(f"{name}={json.dumps(value)} (the form's suggestion)", markup=False)
            values[name] = value
        job = client.submit(
            kind,
            values,
            parallelism=parallelism,
            chunk_time_limit_s=chunk_time_limit_s,
            priority=priority,
        )
        if not wait:
            if as_json:
                _print_json(job)
            else:
                _say(f"job {job['id']} created ({job['total_chunks']} chunks)")
            return
        if not as_json:
            _say(f"job {job['id']} created ({job['total_chunks']} chunks)")
        _watch(client, job["id"], as_json)


@main.command()
@global_options
@click.argument("job_id", type=int)
@click.pass_context
def watch(ctx: click.Context, job_id: int) -> None:
    """Live progress of a job; exits 0 only if it succeeds."""
    client, as_json = _context(ctx)
    with _friendly_errors():
        _watch(client, job_id, as_json)


@main.command(name="list")
@global_options
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=25, show_default=True)
@click.pass_context
def list_jobs(ctx: click.Context, status: str | None, limit: int) -> None:
    """Your jobs, newest first."""
    client, as_json = _context(ctx)
    with _friendly_errors():
        found = client.jobs(status=status, limit=limit)
    if as_json:
        _print_json(found)
        return
    table = Table("id", "kind", "status", "priority", "chunks", "created", "wall s", "speedup")
    for job in found:
        table.add_row(
            str(job["id"]),
            job["kind"],
            job["status"],
            job.get("priority", ""),
            f"{job['done_chunks']}/{job['total_chunks']}",
            job["created_at"][:19].replace("T", " "),
            "" if job["wall_seconds"] is None else f"{job['wall_seconds']:.2f}",
            _speedup_text(job, short=True),
        )
    console.print(table)


def _job_action(name: str, doc: str) -> None:
    @main.command(name=name, help=doc)
    @global_options
    @click.argument("job_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, job_id: int) -> None:
        client, as_json = _context(ctx)
        with _friendly_errors():
            job = getattr(client, name)(job_id)
        if as_json:
            _print_json(job)
        else:
            _say(_summary(job))


_job_action("cancel", "Cancel a job.")
_job_action("retry", "Re-run the chunks of a failed job that are not done.")
_job_action("rerun", "A new job with the same kind and parameters.")


@main.command()
@global_options
@click.argument("job_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the result file (or the JSON result) here.",
)
@click.pass_context
def result(ctx: click.Context, job_id: int, output: Path | None) -> None:
    """A job's result; with --output, its result file (e.g. a PNG) saved to FILE."""
    client, as_json = _context(ctx)
    with _friendly_errors():
        job = client.job(job_id)
        if job["status"] != "succeeded":
            _fail(f"job {job_id} is {job['status']}: no result")
            sys.exit(1)
        if output is None:
            _print_json(job["result"])
            return
        data = (
            client.result_file(job_id)
            if job["result_file"]
            else json.dumps(job["result"], indent=2, sort_keys=True).encode() + b"\n"
        )
        output.write_bytes(data)
    if as_json:
        _print_json({"path": str(output), "bytes": len(data)})
    else:
        _say(f"wrote {len(data)} bytes to {output}")


@main.command()
@global_options
@click.argument("job_id", type=int)
@click.option("--chunk", "index", type=click.IntRange(min=0), help="Only this chunk's output.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ends.")
@click.pass_context
def logs(ctx: click.Context, job_id: int, index: int | None, follow: bool) -> None:
    """Print what a job's chunks wrote (stdout, stderr, log records), a header per chunk."""
    client, as_json = _context(ctx)
    with _friendly_errors():
        shown: dict[int, int] = {}
        last: int | None = None
        line_open = False
        for piece in client.follow_output(job_id, chunk=index, follow=follow):
            if as_json:
                click.echo(json.dumps(piece, sort_keys=True))
                continue
            number, offset, text = piece["index"], piece["offset"], piece["text"]
            before = shown.get(number, 0)
            if number != last or offset > before:
                if line_open:
                    click.echo()
                if number != last:
                    click.echo(f"── chunk {number} ({piece['status']}) ──")
                if offset > before:
                    earlier = "earlier " if not before else ""
                    click.echo(f"[… {offset - before:,} {earlier}bytes cut …]")
            click.echo(text, nl=False)
            line_open = (line_open and not text) or (bool(text) and not text.endswith("\n"))
            last = number
            shown[number] = offset + len(text.encode())
        if line_open:
            click.echo()


@main.command()
@global_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def upload(ctx: click.Context, file: Path) -> None:
    """Upload FILE for a kind to read (e.g. wordcount's `upload` parameter)."""
    client, as_json = _context(ctx)
    with _friendly_errors():
        uploaded = client.upload(file)
    if as_json:
        _print_json(uploaded)
    else:
        _say(
            f"upload {uploaded['id']}: {uploaded['name']} ({uploaded['size']} bytes); "
            f"use --param upload={uploaded['id']}"
        )
