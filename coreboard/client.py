"""A small Python client for Coreboard's JSON API (and its job websocket).

    from coreboard.client import Client

    client = Client()  # COREBOARD_URL, COREBOARD_TOKEN[_FILE] or ~/.config/coreboard/config.toml
    job = client.submit("primes", {"start": 0, "stop": 10_000_000, "chunks": 8})
    job = client.wait(job["id"])
    print(job["status"], job["result"], job["speedup"])

Jobs are plain dicts with the API's fields (see /api/docs/). Errors from the server raise
`ApiError`, which carries the HTTP status and the body (errors by field for a 400).
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import time
import tomllib
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

ENDED = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_CONFIG = Path("~/.config/coreboard/config.toml")
POLL_SECONDS = 1.0


class ConfigError(Exception):
    """No server URL or token was given in any of the places they are looked for."""


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {_describe(body)}")


def _describe(body: Any) -> str:
    if isinstance(body, Mapping):
        # DRF errors are `{"detail"}`; a 409 repeats it as `status` (protocol.ConflictBody).
        if "detail" in body:
            return str(body["detail"])
        return "; ".join(f"{key}: {_describe(value)}" for key, value in body.items())
    if isinstance(body, list):
        return " ".join(_describe(item) for item in body)
    return str(body)


class InsecureCredentialsWarning(UserWarning):
    """A file holding a token can be read by other users of this machine."""


def _warn_if_shared(path: Path, what: str) -> None:
    """Warn when `path` (holding a token) is readable or writable by group or others.

    Anyone who can read the file can act as its owner on the server until the token is
    revoked; POSIX permission bits only (other systems have no mode to check).
    """
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if mode & 0o077:
        warnings.warn(
            f"{path} holds {what} and other users of this machine can read or change it "
            f"(mode {stat.filemode(mode)}): run `chmod 600 {shlex.quote(str(path))}`",
            InsecureCredentialsWarning,
            stacklevel=3,
        )


def config_path() -> Path:
    return Path(os.environ.get("COREBOARD_CONFIG") or DEFAULT_CONFIG).expanduser()


def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """`url`, `token` and `token_file` from COREBOARD_CONFIG or
    ~/.config/coreboard/config.toml, if any; a warning when the file holds a token that other
    users can read."""
    file = Path(path).expanduser() if path is not None else config_path()
    if not file.is_file():
        return {}
    with file.open("rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{file} is not valid TOML: {error}") from None
    found = {key: str(data[key]) for key in ("url", "token", "token_file") if key in data}
    if "token" in found:
        _warn_if_shared(file, "an API token")
    return found


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in a file (its first line, spaces stripped); a warning when others can
    read it."""
    file = Path(path).expanduser()
    try:
        token = file.read_text().strip()
    except OSError as error:
        raise ConfigError(f"Cannot read the token file {file}: {error.strerror}") from None
    if not token:
        raise ConfigError(f"The token file {file} is empty.")
    _warn_if_shared(file, "an API token")
    return token


def find_token(token: str | None = None, *, config: Mapping[str, str]) -> str:
    """The token from the first place that has one: the argument, COREBOARD_TOKEN, the file
    named by COREBOARD_TOKEN_FILE, the config's `token`, the file named by its `token_file`.

    Never a command-line flag: a process's arguments are visible to every user (`ps`).
    """
    if token:
        return token
    if os.environ.get("COREBOARD_TOKEN"):
        return os.environ["COREBOARD_TOKEN"]
    if os.environ.get("COREBOARD_TOKEN_FILE"):
        return read_token_file(os.environ["COREBOARD_TOKEN_FILE"])
    if config.get("token"):
        return config["token"]
    if config.get("token_file"):
        return read_token_file(config["token_file"])
    return ""


class Client:
    """Coreboard over HTTP with a token. Arguments win over the environment and the config."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        config: str | os.PathLike[str] | None = None,
    ) -> None:
        file = load_config(config)
        self.url = (url or os.environ.get("COREBOARD_URL") or file.get("url") or "").rstrip("/")
        if not self.url:
            raise ConfigError(
                "No server: pass --url, or set COREBOARD_URL, or `url` in the config "
                f"({config or config_path()})."
            )
        self.token = find_token(token, config=file)
        if not self.token:
            raise ConfigError(
                "No token: set COREBOARD_TOKEN, or COREBOARD_TOKEN_FILE (or --token-file) to "
                "a file holding it, or `token` in the config "
                f"({config or config_path()}, chmod 600); make one on the server's API "
                "tokens page."
            )
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plain calls ---------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text.strip()[:500]
            raise ApiError(response.status_code, body)
        return response

    def kinds(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/kinds/").json())

    def submit(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        parallelism: int | None = None,
        chunk_time_limit_s: int | None = None,
        priority: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": kind, "params": dict(params)}
        if priority is not None:
            body["priority"] = priority
        if parallelism is not None:
            body["parallelism"] = parallelism
        if chunk_time_limit_s is not None:
            body["chunk_time_limit_s"] = chunk_time_limit_s
        return dict(self._request("POST", "/api/jobs/", json=body).json())

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self._request("GET", f"/api/jobs/{job_id}/").json())

    def jobs(self, *, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Your jobs, newest first (all pages, or the first `limit`)."""
        found: list[dict[str, Any]] = []
        params = {"status": status} if status else {}
        url: str | None = "/api/jobs/"
        while url and (limit is None or len(found) < limit):
            page = self._request("GET", url, params=params).json()
            found.extend(page["results"])
            url, params = page["next"], {}
        return found[:limit] if limit is not None else found

    def cancel(self, job_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/api/jobs/{job_id}/cancel/").json())

    def retry(self, job_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/api/jobs/{job_id}/retry/").json())

    def rerun(self, job_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/api/jobs/{job_id}/rerun/").json())

    def result_file(self, job_id: int) -> bytes:
        return self._request("GET", f"/api/jobs/{job_id}/result-file/").content

    def chunk_output(self, job_id: int, index: int, *, offset: int | None = None) -> dict[str, Any]:
        """What one chunk wrote, from byte `offset` on (when still retained)."""
        params = {"offset": offset} if offset is not None else {}
        path = f"/api/jobs/{job_id}/chunks/{index}/output/"
        return dict(self._request("GET", path, params=params).json())

    def output(self, job_id: int) -> dict[str, Any]:
        """What the job's chunks wrote, by chunk (those that wrote anything)."""
        return dict(self._request("GET", f"/api/jobs/{job_id}/output/").json())

    def follow_output(
        self, job_id: int, *, chunk: int | None = None, follow: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Pieces of output as the API gives them (`index`, `offset`, `text`, `cut_bytes`),
        each new to the caller; with `follow`, polled once a second until the job ended.

        A piece whose `offset` is past what came before means bytes were cut in between.
        """
        sent: dict[int, int] = {}
        while True:
            ended = self.job(job_id)["status"] in ENDED
            if chunk is not None:
                pieces = [self.chunk_output(job_id, chunk, offset=sent.get(chunk))]
            else:
                pieces = self.output(job_id)["chunks"]
            for piece in pieces:
                index = piece["index"]
                end = piece["offset"] + len(piece["text"].encode())
                known = sent.get(index, 0)
                if end <= known or not (piece["text"] or piece["cut_bytes"]):
                    continue
                if piece["offset"] < known:
                    # The whole retained text again (all chunks): only its new part.
                    new = piece["text"].encode()[known - piece["offset"] :]
                    piece = {**piece, "offset": known, "text": new.decode("utf-8", "replace")}
                sent[index] = end
                yield piece
            # The job's state was read first: what ended before it is all in these pieces.
            if not follow or ended:
                return
            time.sleep(POLL_SECONDS)

    def upload(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        file = Path(path)
        with file.open("rb") as handle:
            response = self._request("POST", "/api/uploads/", files={"file": (file.name, handle)})
        return dict(response.json())

    # --- live state ----------------------------------------------------------------------

    def watch(self, job_id: int, *, websocket: bool = True) -> Iterator[dict[str, Any]]:
        """Successive states of a job until it ends (the last one yielded has ended).

        States come from the job's websocket (`Authorization: Token` on the handshake);
        when the socket cannot be opened or drops, from polling the API once a second.
        """
        last: dict[str, Any] | None = None
        if websocket:
            try:
                for state in self._watch_socket(job_id):
                    last = state
                    yield state
                    if state["status"] in ENDED:
                        return
            except Exception:  # noqa: S110 - any socket trouble: poll instead
                pass
        while last is None or last["status"] not in ENDED:
            if last is not None:
                time.sleep(POLL_SECONDS)
            last = self.job(job_id)
            yield last

    def wait(
        self, job_id: int, *, on_update: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Block until the job ends; its final state (a fresh read, with result and timings)."""
        for state in self.watch(job_id):
            if on_update is not None:
                on_update(state)
        return self.job(job_id)

    def _socket_url(self, job_id: int) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, f"{parts.path}/ws/jobs/{job_id}/", "", ""))

    def _watch_socket(self, job_id: int) -> Generator[dict[str, Any], None, None]:
        # Imported here: only watching needs the websocket library (~0.1 s to import), and
        # most commands and scripts that use the client never watch (not a cycle).
        from websockets.sync.client import connect
        from websockets.typing import Origin

        parts = urlsplit(self.url)
        with connect(
            self._socket_url(job_id),
            additional_headers={"Authorization": f"Token {self.token}"},
            origin=Origin(f"{parts.scheme}://{parts.netloc}"),
            open_timeout=10,
            max_size=4 * 1024 * 1024,
        ) as socket:
            version = -1
            for raw in socket:
                message = json.loads(raw)
                job = message.get("job")
                # States from different worker processes may arrive out of order.
                if (
                    message.get("type") in ("job.snapshot", "job.progress")
                    and job
                    and job.get("version", 0) >= version
                ):
                    version = job.get("version", 0)
                    yield job
