"""`make worker [NODE=name] [QUEUES=q1,q2] [CONCURRENCY=n] [LABELS=a,b]`: a Celery worker
only, for more machines (point DATABASE_URL and REDIS_URL at the shared servers; `make run`
with COREBOARD_LISTEN prints the whole line).

The node name is the worker's identity in the cluster (the overview, drain, the slot
registry, the collision check of jobs.engine.preflight). By default it is
`coreboard-<node id>@<host name>`, where the node id is 8 random hex digits generated once
into var/node-id: stable across restarts of this checkout, and distinct for two machines
(or clones) that share a host name. Two workers from one checkout need NODE= names.

Started by root (as the join command is, typically), it becomes the main machine's
service user (COREBOARD_OS_USER, launcher.stack.service_user) before it starts Celery,
as `make run` does for its own worker; and it records the code version
(COREBOARD_CODE_VERSION) before, as whoever runs `make`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from coreconf import config, paths
from launcher import join, stack

NODE_ID_FILE = "node-id"
# Celery node names, queue names and labels travel in Redis keys and on pages: plain words.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(@[A-Za-z0-9][A-Za-z0-9_.-]{0,252})?$")
VENV_BIN = Path(sys.executable).parent


def worker_command(concurrency: int, *extra: str) -> list[str]:
    """The Celery worker Coreboard runs: prefork, one process per core by default."""
    return [
        str(VENV_BIN / "celery"),
        "-A",
        "project",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        *extra,
    ]


def beat_command() -> list[str]:
    """Celery beat with people's schedules (the scheduler is CELERY_BEAT_SCHEDULER,
    jobs.beat): every main machine may run one; only the holder of the cluster's scheduler
    lock fires, the others wait to take over."""
    return [str(VENV_BIN / "celery"), "-A", "project", "beat", "--loglevel=INFO"]


class WorkerOptionError(ValueError):
    """A `make worker` option that cannot be used; the message names it and the rule."""


def node_id_file() -> Path:
    return paths.VAR_DIR / NODE_ID_FILE


def node_id() -> str:
    """This checkout's node id (var/node-id, created once, readable by all: the worker
    reads it as the service user); a fresh one per start when var/ cannot be written (the
    name then changes with every start)."""
    path = node_id_file()
    try:
        value = path.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{8}", value):
            return value
    except OSError:
        pass
    value = secrets.token_hex(4)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o644)
    except OSError:
        print(f"make worker: cannot write {path}; this start's node id is {value}", file=sys.stderr)
    return value


def default_node_name() -> str:
    return f"coreboard-{node_id()}@{socket.gethostname()}"


def node_name(given: str) -> str:
    """NODE=name becomes name@<host name>; NODE=name@host is used as given."""
    if not _NODE.match(given):
        raise WorkerOptionError(
            f"NODE must be a name (letters, digits, '_', '.', '-'; up to 63 characters), "
            f"optionally followed by @host: not {given!r}"
        )
    return given if "@" in given else f"{given}@{socket.gethostname()}"


def names(option: str, value: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if not _NAME.match(item):
            raise WorkerOptionError(
                f"{option} must be comma-separated names (letters, digits, '_', '.', ':', '-'; "
                f"up to 63 characters each): not {item!r}"
            )
    return items


def concurrency(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise WorkerOptionError(f"CONCURRENCY must be a whole number, not {value!r}") from None
    if not 1 <= number <= 1024:
        raise WorkerOptionError(f"CONCURRENCY must be between 1 and 1024, not {number}")
    return number


def worker_args(
    argv: Sequence[str], environ: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The celery command line and environment of `make worker` with these options."""
    environ = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(prog="make worker")
    parser.add_argument("--node", default=config.string("COREBOARD_WORKER_NODE", environ))
    parser.add_argument("--queues", default=config.string("COREBOARD_WORKER_QUEUES", environ))
    # Read as text: CONCURRENCY= and the variable get one check, with one message.
    parser.add_argument(
        "--concurrency",
        default=config.setting("COREBOARD_WORKER_CONCURRENCY").given_in(environ)
        or str(os.cpu_count() or 1),
    )
    parser.add_argument(
        "--labels", default=",".join(config.strings("COREBOARD_WORKER_LABELS", environ))
    )
    options = parser.parse_args(list(argv))
    extra = ["-n", node_name(options.node) if options.node else default_node_name()]
    queues = names("QUEUES", options.queues)
    if queues:
        extra += ["-Q", ",".join(queues)]
    environ["COREBOARD_WORKER_LABELS"] = ",".join(names("LABELS", options.labels))
    return worker_command(concurrency(str(options.concurrency)), *extra), environ


def _media_give_back(media_root: Path, user: pwd.struct_passwd) -> None:
    """Result folders that an older `make worker` created as root become the service
    user's again (the web answered 500 for their files, and the next job that wrote there
    as the service user failed). Best effort: a shared MEDIA_ROOT mounted with root
    squashing refuses root's chown; the main machine's `make run` does the same."""
    if not media_root.is_dir():
        return
    try:
        stack.give_to(media_root, user)
    except (OSError, subprocess.CalledProcessError, stack.StackError) as error:
        print(
            f"make worker: could not give {media_root} to {user.pw_name} ({error}); the main "
            "machine's `make run` does at its next start",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, environ = worker_args(sys.argv[1:] if argv is None else argv)
        # Django's key, created here on a fresh machine rather than by importing settings.
        environ.setdefault("SECRET_KEY", paths.django_secret_key())
        # Recorded by whoever runs `make`: the worker may not be able to ask git itself.
        environ.update(join.code_version_env(environ))
        # Started by root, the worker runs as the main machine's service user, as `make run`
        # runs its own: files it writes to the shared MEDIA_ROOT are the web's to read.
        user = stack.service_user()
        if user is not None:
            # The worker reads var/node-id (its machine in the name lease) as that user.
            stack.grant_interpreter(user, node_id_file())
            _media_give_back(Path(config.string("MEDIA_ROOT", environ) or paths.media_root()), user)
    except (WorkerOptionError, config.SettingError, stack.StackError) as error:
        print(f"make worker: {error}", file=sys.stderr)
        return 2
    stack.become_service_user(user)
    os.execve(args[0], args, environ)  # noqa: S606 - our own celery, a fixed program


if __name__ == "__main__":
    sys.exit(main())
