"""Cluster in minutes: which network `make run` exposes its embedded services to, and the
command that starts a worker on another machine (the "join command").

`COREBOARD_LISTEN=<address>` names an address of this machine that the other machines
reach. The embedded PostgreSQL and Redis then listen on it as well as on 127.0.0.1, and
PostgreSQL accepts password (SCRAM) logins from `COREBOARD_LISTEN_NETWORK` only: by
default the network of the interface that holds the address (e.g. 10.0.0.5/24 gives
10.0.0.0/24), which is the network the operator named by picking that interface.

Nothing here imports Django: `make run` uses it before settings exist.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from coreconf import config, paths
from launcher import stack

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

JOIN_COMMAND_FILE = "join-command"


@dataclass(frozen=True)
class Listen:
    """The address other machines reach this one at, and who may log in through it."""

    address: IPAddress
    network: IPNetwork

    @property
    def url_host(self) -> str:
        return url_host(self.address)


def url_host(address: IPAddress) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


def _interface_network(address: IPAddress) -> IPNetwork | None:
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6) or not entry.netmask:
                continue
            try:
                if ipaddress.ip_address(entry.address.split("%", 1)[0]) != address:
                    continue
                return ipaddress.ip_network(f"{address}/{entry.netmask}", strict=False)
            except ValueError:
                continue
    return None


def _local_addresses() -> list[str]:
    return sorted(
        entry.address
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    )


def listen_from_env(environ: Mapping[str, str] = os.environ) -> Listen | None:
    """COREBOARD_LISTEN / COREBOARD_LISTEN_NETWORK, checked; None when not set."""
    raw = config.string("COREBOARD_LISTEN", environ).strip()
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise stack.StackError(
            f"COREBOARD_LISTEN must be an IP address of this machine, not {raw!r}"
        ) from None
    if address.is_loopback or address.is_unspecified:
        raise stack.StackError(
            f"COREBOARD_LISTEN={raw} is not reachable from other machines; name the address "
            "of the interface they reach (loopback is always served)"
        )
    interface_network = _interface_network(address)
    if interface_network is None:
        raise stack.StackError(
            f"COREBOARD_LISTEN={raw} is not an address of this machine (its addresses: "
            f"{', '.join(_local_addresses())})"
        )
    given = config.string("COREBOARD_LISTEN_NETWORK", environ).strip()
    if given:
        try:
            network = ipaddress.ip_network(given, strict=False)
        except ValueError:
            raise stack.StackError(
                f"COREBOARD_LISTEN_NETWORK must be a network such as 10.0.0.0/24, not {given!r}"
            ) from None
        if network.version != address.version:
            raise stack.StackError(
                f"COREBOARD_LISTEN_NETWORK={given} and COREBOARD_LISTEN={raw} are not of the "
                "same IP version"
            )
    else:
        network = interface_network
        if network.num_addresses == 1:
            raise stack.StackError(
                f"the interface of COREBOARD_LISTEN={raw} has no network (/{network.prefixlen}); "
                "set COREBOARD_LISTEN_NETWORK to the network the workers connect from"
            )
    return Listen(address=address, network=network)


def url_is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A fixed length, so that two machines with the same commit show the same version (git's
# default abbreviation grows with the repository, which differs between clones).
CODE_VERSION_LENGTH = 12


def code_version() -> str:
    """The checkout's commit ("" when unknown): a REVISION file written at build time (for
    deployments without .git), else `git rev-parse`.

    Read by the launcher, as whoever runs `make`, and handed to the services it starts
    (COREBOARD_CODE_VERSION): they may run as another user, for whom git refuses a checkout
    it does not own ("dubious ownership"). `safe.directory` on the command line lets this
    one read-only call through for whoever runs it.
    """
    try:
        text = (paths.BASE_DIR / "REVISION").read_text().strip()
        if text:
            return text[:40]
    except OSError:
        pass
    try:
        return subprocess.run(  # noqa: S603 - fixed arguments
            [  # noqa: S607 - git from PATH is the point
                "git",
                "-c",
                f"safe.directory={paths.BASE_DIR}",
                "-C",
                str(paths.BASE_DIR),
                "rev-parse",
                f"--short={CODE_VERSION_LENGTH}",
                "HEAD",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_version_env(environ: Mapping[str, str]) -> dict[str, str]:
    """COREBOARD_CODE_VERSION for a service's environment: as given, else recorded now."""
    given = config.string("COREBOARD_CODE_VERSION", environ)
    recorded = given or code_version()
    return {"COREBOARD_CODE_VERSION": recorded} if recorded else {}


def join_command(
    *,
    database_url: str,
    redis_url: str,
    media_root: Path,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The shell line that starts a worker on another machine, in a checkout of the same
    code there: `make worker` with every setting workers must share (coreconf.config,
    `shared=True`): the services' URLs as other machines reach them, the shared MEDIA_ROOT,
    and each other one set here, under its current name even where set under an old one."""
    assignments = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(media_root.resolve()),
    }
    for setting in config.shared_settings():
        given = setting.given_in(environ)
        if given and setting.name not in assignments:
            assignments[setting.name] = given
    line = " ".join(f"{name}={shlex.quote(value)}" for name, value in assignments.items())
    return f"{line} make worker"


def join_command_file() -> Path:
    return paths.VAR_DIR / JOIN_COMMAND_FILE


def join_command_write(command: str) -> Path:
    """var/join-command, 0600: it holds passwords."""
    path = join_command_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(command + "\n")
    partial.replace(path)
    return path


def join_command_forget() -> None:
    """No stale credentials lie around once the services are not exposed any more."""
    join_command_file().unlink(missing_ok=True)
