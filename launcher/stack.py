"""The embedded default: a private PostgreSQL cluster and Redis server under ./var.

Used by `make run` (launcher.run) and by the test suite (tests.services_plugin); the
default connection URLs settings use come from coreconf.paths, which this builds on.
Nothing here imports Django, so it can run before settings are configured.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from coreconf import config, paths
from coreconf.paths import read_or_create_secret, read_secret
from launcher import least_privilege
from launcher.supervisor import Health

# Files the services create are not for other local users (group: the service account).
SERVICE_UMASK = 0o027

STARTUP_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """An embedded service could not be prepared or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    port: int, *, timeout: float = STARTUP_TIMEOUT_S, what: str = "server", host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while not port_is_open(port, host):
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not open {host}:{port} within {timeout:.0f} s")
        time.sleep(0.05)


def postgres_bin_dir() -> Path:
    configured = config.string("COREBOARD_PG_BIN")
    if configured:
        return Path(configured)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError("PostgreSQL server binaries not found (apt-get install postgresql)")


def service_user() -> pwd.struct_passwd | None:
    """The unprivileged account daphne, Celery and Redis run as when started by root
    (COREBOARD_OS_USER, created as a system user if missing); None when not root."""
    if os.geteuid() != 0:
        return None
    name = config.string("COREBOARD_OS_USER")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
        return pwd.getpwnam(name)


def as_service_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen keyword arguments that start a process as `user` (no other groups) with the
    services' umask; just the umask when `user` is None."""
    if user is None:
        return {"umask": SERVICE_UMASK}
    return {
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": [],
        "umask": SERVICE_UMASK,
    }


def become_service_user(user: pwd.struct_passwd | None) -> None:
    """Make this process what `as_service_user` makes a child: `user` (no other groups)
    with the services' umask; just the umask when `user` is None. For a launcher that
    execs its service (`make worker`) rather than starting it as a child."""
    os.umask(SERVICE_UMASK)
    if user is None:
        return
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def give_to(path: Path, user: pwd.struct_passwd) -> None:
    """Make `path` (a directory, created if missing, and everything in it) belong to
    `user` and nobody else (no access for others, also for what older versions left
    readable), and let that user reach it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o750)
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            continue
        os.chown(item, user.pw_uid, user.pw_gid)
        item.chmod(stat.S_IMODE(item.stat().st_mode) & ~0o007)
    _grant_traverse(path, user.pw_name)


def grant_interpreter(user: pwd.struct_passwd, *also: Path) -> None:
    """Let `user` reach the Python interpreter and the checkout (the virtualenv's python
    may live under /root, which is 0700 on Debian), and the files `also` names."""
    _grant_traverse(Path(os.path.realpath(sys.executable)), user.pw_name)
    _grant_traverse(paths.BASE_DIR / "manage.py", user.pw_name)
    for path in also:
        _grant_traverse(path, user.pw_name)


def _grant_traverse(path: Path, user: str) -> None:
    # PostgreSQL refuses to run as root, so it runs as an unprivileged user that must be
    # able to reach ./var/pg. Grant that one user traverse-only access to each ancestor
    # directory that others cannot already traverse (e.g. /root is 0700 on Debian).
    for ancestor in reversed(path.parents):
        mode = ancestor.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        if shutil.which("setfacl") is None:
            raise StackError(
                f"user {user!r} cannot reach {ancestor}; install 'acl' or run "
                f"'chmod o+x {ancestor}'"
            )
        subprocess.run(["setfacl", "-m", f"u:{user}:x", str(ancestor)], check=True)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A private PostgreSQL cluster on 127.0.0.1, data under `root`.

    With `listen_address` (COREBOARD_LISTEN) it also listens there, and its client
    authentication file, written afresh at every start, lets the unprivileged worker role
    log in with its password from `listen_network` only; the superuser stays on loopback.
    With `ssl_cert` and `ssl_key` those logins must use TLS.
    """

    root: Path
    port: int
    user: str = paths.EMBEDDED_PG_USER
    database: str = paths.EMBEDDED_PG_DATABASE
    secret_name: str = paths.PG_PASSWORD_SECRET
    listen_address: str = ""
    listen_network: str = ""
    ssl_cert: str = ""
    ssl_key: str = ""
    # 0: PostgreSQL's own default (100); a cluster needs more (docs/operations.md: Scaling out).
    max_connections: int = 0
    # The role workers on other machines log in as: no superuser over the network.
    worker_user: str = least_privilege.WORKER_ROLE
    worker_secret_name: str = "pg-worker-password"  # noqa: S105 - a file name

    @classmethod
    def default(cls, *, listen_address: str = "", listen_network: str = "") -> EmbeddedPostgres:
        return cls(
            root=paths.VAR_DIR / "pg",
            port=paths.embedded_port("COREBOARD_PG_PORT"),
            listen_address=listen_address,
            listen_network=listen_network,
            ssl_cert=config.string("COREBOARD_PG_SSL_CERT"),
            ssl_key=config.string("COREBOARD_PG_SSL_KEY"),
            max_connections=config.integer("COREBOARD_PG_MAX_CONNECTIONS"),
        )

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str | None = None) -> str:
        return paths.embedded_postgres_url(
            port=self.port,
            secret_name=self.secret_name,
            user=self.user,
            database=database or self.database,
        )

    # -- running as the unprivileged owner of the cluster ---------------------------------

    @staticmethod
    def os_user() -> str | None:
        if os.geteuid() != 0:
            return None
        user = config.string("COREBOARD_PG_OS_USER")
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                check=True,
            )
        return user

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        user = self.os_user()
        command = ["runuser", "-u", user, "--", *args] if user else args
        return subprocess.run(command, text=True, capture_output=True, check=False)

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        user = self.os_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            _grant_traverse(self.root, user)

    def ensure_initialised(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_root()
        password = read_or_create_secret(self.secret_name)
        pwfile = self.root / "initdb-password"
        pwfile.write_text(password + "\n")
        user = self.os_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            result = self._run(
                [
                    str(postgres_bin_dir() / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    self.user,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def is_running(self) -> bool:
        result = self._run([str(postgres_bin_dir() / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return result.returncode == 0

    def start(self) -> None:
        self.ensure_initialised()
        if self.is_running():
            raise StackError(
                f"a PostgreSQL server already runs on {self.data_dir}; is another "
                "'make run' or test run using this checkout?"
            )
        if port_is_open(self.port):
            raise StackError(f"port {self.port} is taken; set COREBOARD_PG_PORT to a free port")
        self._hba_write()
        options = self._options()
        result = self._run(
            [
                str(postgres_bin_dir() / "pg_ctl"),
                "start",
                "--wait",
                f"--timeout={int(STARTUP_TIMEOUT_S)}",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
            ]
        )
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise StackError(f"PostgreSQL did not start:\n{result.stdout}{result.stderr}{log}")
        self._ensure_database()

    def _options(self) -> str:
        """The server options of our start (pg_ctl -o), which an adopted server must have."""
        addresses = ",".join(filter(None, ["127.0.0.1", self.listen_address]))
        options = (
            f"-c listen_addresses={addresses} -c port={self.port} -c unix_socket_directories='' "
            f"-c hba_file={shlex.quote(str(self.root / 'pg_hba.conf'))}"
        )
        if self.max_connections:
            options += f" -c max_connections={self.max_connections}"
        if self.ssl_cert and self.ssl_key:
            options += (
                f" -c ssl=on -c ssl_cert_file={shlex.quote(self.ssl_cert)}"
                f" -c ssl_key_file={shlex.quote(self.ssl_key)}"
            )
        return options

    # -- health and adoption (launcher.supervisor) ---------------------------------------

    def postmaster_pid(self) -> int | None:
        """The pid in postmaster.pid while that process runs (the server on our data
        directory, whoever started it)."""
        return _pid_alive(_first_line_pid(self.data_dir / "postmaster.pid"))

    def accepting(self) -> bool:
        """Whether it accepts connections on our port: libpq's PQping, what pg_isready
        does (no login), in this process (no child of ours runs as root)."""
        # Imported here: psycopg costs ~0.2 s, and every `make worker` and `python -m
        # launcher.*` imports this module without needing it.
        from psycopg import pq

        conninfo = f"host=127.0.0.1 port={self.port} connect_timeout=2"
        return bool(pq.PGconn.ping(conninfo.encode()) == pq.Ping.OK)

    def health(self) -> Health:
        if self.postmaster_pid() is None:
            return Health.DOWN
        return Health.UP if self.accepting() else Health.SILENT

    def adopt(self, log: Callable[[str], None] = print) -> str | None:
        """Take over the server running on our data directory (left by an earlier
        `make run`, restarted in place, or started by someone else) when it runs with our
        options; one with other options (another port) is stopped, for a start of ours."""
        pid = self.postmaster_pid()
        if pid is None:
            return None
        try:
            running = shlex.split((self.data_dir / "postmaster.opts").read_text())[1:]
        except (OSError, ValueError):
            running = []
        if _without_data_dir(running) != shlex.split(self._options()):
            log(
                f"make run: the PostgreSQL server on {self.data_dir} (pid {pid}) runs with "
                f"other options than this start's ({' '.join(running[2:]) or 'unknown'}); "
                "stopping it"
            )
            self.stop()
            return None
        # pg_hba.conf is written at every start (COREBOARD_LISTEN_NETWORK may have changed).
        self._hba_write()
        self._run([str(postgres_bin_dir() / "pg_ctl"), "reload", "-D", str(self.data_dir)])
        return f"the PostgreSQL server already running on {self.data_dir} (pid {pid})"

    def _hba_write(self) -> Path:
        """pg_hba.conf for this start: passwords everywhere; the network only for workers."""
        lines = [
            "# Written by Coreboard at every start (launcher/stack.py): edits are lost.",
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
        ]
        if self.listen_address and self.listen_network:
            method = "hostssl" if self.ssl_cert and self.ssl_key else "host"
            lines.append(
                f"{method} {self.database} {self.worker_user} {self.listen_network} scram-sha-256"
            )
        path = self.root / "pg_hba.conf"
        path.write_text("\n".join(lines) + "\n")
        user = self.os_user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o600)
        return path

    def worker_url(self, host: str) -> str:
        """The worker role's URL through `host` (an address other machines reach)."""
        return paths.postgres_url(
            user=self.worker_user,
            password=read_secret(self.worker_secret_name),
            host=host,
            port=self.port,
            database=self.database,
        ) + ("?sslmode=require" if self.ssl_cert and self.ssl_key else "")

    def worker_role_ensure(self) -> None:
        """The worker role: login with its password, and only the tables workers use
        (launcher.least_privilege), whatever it held before. Run after every migrate."""
        least_privilege.postgres_worker_role_ensure(
            self.url(),
            password=read_or_create_secret(self.worker_secret_name),
            role=self.worker_user,
        )

    def _ensure_database(self) -> None:
        # Imported here for the reason given in accepting.
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        self._run(
            [str(postgres_bin_dir() / "pg_ctl"), "stop", "--mode=fast", "-D", str(self.data_dir)]
        )

    def restart(self) -> None:
        """A fast restart (open sessions are cut), as after a crash or an upgrade."""
        self.stop()
        self.start()


def redis_worker_secret(secret_name: str) -> str:
    """The file under var/secrets with the password of the workers' ACL user on the Redis
    whose default user's password is in `secret_name`."""
    return f"{secret_name}-worker"


@dataclass
class EmbeddedRedis:
    """A private redis-server on 127.0.0.1, data under `root`, run as our child process.

    It requires a password (generated once into var/secrets/<secret_name>, given to Redis
    in a 0600 config file rather than on its command line, and carried by `url()`), so
    another local process cannot enqueue tasks or forge live progress; and it runs as the
    service user when started by root.
    """

    root: Path
    port: int
    persist: bool = True
    secret_name: str = paths.REDIS_PASSWORD_SECRET
    process: subprocess.Popen[bytes] | None = None
    # COREBOARD_LISTEN: also bound there (with the same password), for other machines.
    listen_address: str = ""
    # A server we did not start but took over (launcher.supervisor): its pid.
    adopted: int | None = None
    # Whether the server has the workers' ACL user (Redis 6 and later, once started).
    worker_user_made: bool = False

    @classmethod
    def default(cls, *, listen_address: str = "") -> EmbeddedRedis:
        port = paths.embedded_port("COREBOARD_REDIS_PORT")
        return cls(root=paths.VAR_DIR / "redis", port=port, listen_address=listen_address)

    def url_through(self, host: str, db: int = 0) -> str:
        """The URL through `host` (an address other machines reach)."""
        return paths.redis_url(
            password=read_secret(self.secret_name), host=host, port=self.port, db=db
        )

    def url(self, db: int = 0) -> str:
        return paths.embedded_redis_url(port=self.port, secret_name=self.secret_name, db=db)

    @property
    def worker_secret_name(self) -> str:
        return redis_worker_secret(self.secret_name)

    def worker_url(self, host: str = "127.0.0.1", db: int = 0) -> str:
        """The workers' URL through `host`: their ACL user (launcher.least_privilege) once
        `worker_user_ensure` made it, else the default user's (a Redis without ACLs)."""
        if not self.worker_user_made:
            return self.url_through(host, db)
        return paths.redis_url(
            user=least_privilege.WORKER_REDIS_USER,
            password=read_secret(self.worker_secret_name),
            host=host,
            port=self.port,
            db=db,
        )

    def worker_user_ensure(self) -> None:
        """The workers' ACL user, made afresh at every start of ours and after an adoption
        (`make run` calls it then): ACLs set at run time are not saved, and an adopted
        server may predate it."""
        try:
            self.worker_user_made = least_privilege.redis_worker_user_ensure(
                self.url(), password=read_or_create_secret(self.worker_secret_name)
            )
        except redis.RedisError as error:
            raise StackError(
                f"Redis on port {self.port} did not take the workers' ACL user: {error}"
            ) from error

    def start(self) -> None:
        server = (
            config.string("COREBOARD_REDIS_SERVER")
            or shutil.which("redis-server")
            or "/usr/bin/redis-server"
        )
        if not Path(server).exists():
            raise StackError(
                f"redis-server not found at {server} (apt-get install redis-server, or set "
                "COREBOARD_REDIS_SERVER to its path)"
            )
        if port_is_open(self.port):
            raise StackError(f"port {self.port} is taken; set COREBOARD_REDIS_PORT to a free port")
        self.adopted = None
        password = read_or_create_secret(self.secret_name)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        config_file = self.root / "redis.conf"
        config_file.unlink(missing_ok=True)
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"requirepass {password}\n")
        log = (self.root / "redis.log").open("ab")
        user = service_user()
        if user is not None:
            give_to(self.root, user)
        self.process = subprocess.Popen(
            [
                server,
                str(config_file),
                "--bind",
                *filter(None, ["127.0.0.1", self.listen_address]),
                "--port",
                str(self.port),
                "--dir",
                str(self.root),
                # Names it for the next `make run` if this one dies (adopt).
                "--pidfile",
                str(self.pid_file),
                # The broker's messages and the slot registry must survive a restart:
                # an append-only file written every second, and never evict a key.
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--protected-mode",
                "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_service_user(user),
        )
        try:
            wait_for_port(self.port, what="redis-server")
            self.worker_user_ensure()
        except StackError:
            self.stop()
            raise

    @property
    def pid_file(self) -> Path:
        return self.root / "redis.pid"

    def pid(self) -> int | None:
        """Our server's pid while it runs: our child, or the one its pid file names."""
        if self.process is not None and self.process.poll() is None:
            return self.process.pid
        pid = _pid_alive(_first_line_pid(self.pid_file))
        with contextlib.suppress(psutil.Error):
            if pid is not None and "redis" in psutil.Process(pid).name():
                return pid
        return None

    def answers(self) -> bool:
        """PING with our password on our port, answered within a second."""
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=read_secret(self.secret_name) or None,
            socket_timeout=1,
            socket_connect_timeout=1,
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def health(self) -> Health:
        if self.pid() is None:
            return Health.DOWN
        return Health.UP if self.answers() else Health.SILENT

    def adopt(self, log: Callable[[str], None] = print) -> str | None:
        """Take over our server when it runs (its pid file in our directory), left by an
        earlier `make run` or started by someone else; one that does not listen on our
        port is stopped, for a start of ours."""
        if self.process is not None and self.process.poll() is None:
            return None
        pid = self.pid()
        if pid is None:
            return None
        try:
            ports = {
                c.laddr.port
                for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
        except psutil.Error:
            ports = set()
        if self.port not in ports:
            log(
                f"make run: the Redis server on {self.root} (pid {pid}) does not listen on "
                f"port {self.port}; stopping it"
            )
            self.adopted = pid
            self.stop()
            return None
        self.process = None
        self.adopted = pid
        return f"the Redis server already running on {self.root} (pid {pid})"

    def stop(self) -> None:
        if self.process is None:
            if self.adopted is not None:
                _stop_pid(self.adopted, timeout=10)
                self.adopted = None
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _first_line_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int | None) -> int | None:
    if pid is None or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _stop_pid(pid: int, *, timeout: float) -> None:
    """SIGTERM a process that is not our child, then SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _without_data_dir(args: list[str]) -> list[str]:
    """A postgres command line's arguments without its `-D <data directory>`."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-D":
            skip = True
        else:
            kept.append(arg)
    return kept


@dataclass
class PrivateServices:
    """What start_private_services started (None where a URL was given instead)."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stops(self) -> list[Callable[[], None]]:
        """The functions that stop them, in starting order."""
        return [service.stop for service in (self.postgres, self.redis) if service is not None]


# The password files of the private services' Redis (tests and benchmarks) and of their
# workers' accounts (tests.processes.worker_env); the workers' Redis user's is
# EmbeddedRedis.worker_secret_name.
PRIVATE_REDIS_SECRET = "test-redis-password"  # noqa: S105 - a file name
PRIVATE_PG_WORKER_SECRET = "test-pg-worker-password"  # noqa: S105 - a file name


def start_private_services(
    root: Path,
    *,
    secret_name: str,
    persist: bool = True,
    redis_secret_name: str = PRIVATE_REDIS_SECRET,
) -> PrivateServices:
    """A private PostgreSQL and Redis under `root` on free ports, for tests and benchmarks.

    Skips each one whose URL (DATABASE_URL / REDIS_URL) is already set and exports the
    URLs of those it starts.
    """
    started = PrivateServices()
    try:
        if not config.is_set("DATABASE_URL"):
            postgres = EmbeddedPostgres(root=root / "pg", port=free_port(), secret_name=secret_name)
            postgres.start()
            started.postgres = postgres
            os.environ["DATABASE_URL"] = postgres.url()
        if not config.is_set("REDIS_URL"):
            redis = EmbeddedRedis(
                root=root / "redis",
                port=free_port(),
                persist=persist,
                secret_name=redis_secret_name,
            )
            redis.start()
            started.redis = redis
            os.environ["REDIS_URL"] = redis.url()
    except BaseException:
        for stop in reversed(started.stops()):
            stop()
        raise
    return started
