"""daphne's seams (launcher.server) in isolation: the credential check's bounded cost, the
body deadline and the access log's redaction. The real server is exercised by
tests/integration/test_edge.py and test_server.py."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from launcher import server
from launcher.server import CredentialCheck, body_deadline, redact_query

pytestmark = pytest.mark.services


class ScriptedCheck(CredentialCheck):
    """A CredentialCheck whose checks the test answers (no thread, no database)."""

    def __init__(self) -> None:
        self.now = 100.0
        super().__init__(clock=lambda: self.now)
        self.asked: list[tuple[str | None, bytes | None]] = []
        self.running: list[defer.Deferred[bool]] = []

    def _in_thread(self, credentials: Any) -> defer.Deferred[bool]:
        self.asked.append(credentials)
        answer: defer.Deferred[bool] = defer.Deferred()
        self.running.append(answer)
        return answer


def _results(deferreds: list[defer.Deferred[bool]]) -> list[Any]:
    out: list[Any] = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def test_one_credential_asked_at_once_is_checked_once_and_cached_briefly() -> None:
    checks = ScriptedCheck()
    fake = ("x", None)
    results = _results([checks.authenticates(fake) for _ in range(5)])
    assert checks.asked == [fake]
    checks.running[0].callback(False)
    assert results == [False] * 5
    assert _results([checks.authenticates(fake)]) == [False]  # from the cache
    assert len(checks.asked) == 1
    checks.now += server.CHECK_CACHE_S + 0.1
    checks.authenticates(fake)
    assert len(checks.asked) == 2  # stale: asked again


def test_a_check_that_fails_authenticates_no_one() -> None:
    checks = ScriptedCheck()
    results = _results([checks.authenticates(("s", None))])
    checks.running[0].errback(RuntimeError("database down"))
    assert results == [False]


def test_checks_run_a_few_at_a_time_and_too_many_waiting_are_refused() -> None:
    checks = ScriptedCheck()
    waiting = [
        checks.authenticates((f"key{n}", None))
        for n in range(server.CHECKS_AT_ONCE + server.CHECKS_WAITING_MAX)
    ]
    assert len(checks.running) == server.CHECKS_AT_ONCE
    busy = _results([checks.authenticates(("one-more", None))])
    assert len(busy) == 1
    assert busy[0].check(CredentialCheck.Busy)
    checks.running[0].callback(True)
    assert len(checks.running) == server.CHECKS_AT_ONCE + 1  # the next one started
    assert _results(waiting[:1]) == [True]


def test_the_cache_is_bounded() -> None:
    checks = ScriptedCheck()
    for n in range(server.CHECK_CACHE_MAX + 10):
        checks.authenticates((f"k{n}", None))
        checks.running[-1].callback(False)
    assert len(checks.results) == server.CHECK_CACHE_MAX


def test_a_body_deadline_moves_with_each_byte(settings: Any) -> None:
    settings.COREBOARD_HTTP_BODY_TIMEOUT_S = 20
    settings.COREBOARD_HTTP_BODY_MIN_BYTES_PER_S = 1000
    assert body_deadline(started=0.0, received=0) == 20
    assert body_deadline(started=0.0, received=5000) == 25


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/jobs/", "/jobs/"),
        ("/api/jobs/?token=cb_secret&page=2", "/api/jobs/?token=-&page=-"),
        ("/x?key", "/x?key=-"),
        ("/x?a=1&&b=%20secret", "/x?a=-&b=-"),
        ("/x?", "/x?"),
    ],
)
def test_the_access_log_keeps_query_names_not_values(path: str, logged: str) -> None:
    assert redact_query(path) == logged
