"""Login lockouts (django-axes): per username *and* address, plus a limit per address.

A lockout per username alone let anyone lock anyone out, the admin included, with
COREBOARD_LOGIN_FAILURE_LIMIT wrong passwords every COREBOARD_LOGIN_LOCKOUT_S; a lockout
per address alone is escaped by guessing from many addresses, and behind a proxy locks
everyone out together. So a username is locked only for the address that failed it
(AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]): its owner logs in from anywhere
else. Against one address trying many usernames (password spraying), this handler also
counts each address's failures, whatever the usernames, and refuses that address after
COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT of them for COREBOARD_LOGIN_LOCKOUT_S (a success
does not reset that count: one valid account must not buy a sprayer more guesses).
"""

from __future__ import annotations

from typing import Any

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache_timeout
from django.conf import settings

ADDRESS_KEY = "coreboard:login-failures:address:{}"


def _address(request: Any) -> str | None:
    address = getattr(request, "axes_ip_address", None)
    return str(address) if address else None


class LoginLockouts(AxesCacheHandler):  # type: ignore[misc]  # axes ships no types
    """axes' cache handler with a second count, per address."""

    def address_failures(self, request: Any) -> int:
        address = _address(request)
        if address is None:
            return 0
        return int(self.cache.get(ADDRESS_KEY.format(address), default=0))

    def address_locked(self, request: Any) -> bool:
        return self.address_failures(request) >= settings.COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT

    def is_locked(self, request: Any, credentials: dict[str, Any] | None = None) -> bool:
        return bool(super().is_locked(request, credentials)) or self.address_locked(request)

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        super().user_login_failed(sender, credentials, request, **kwargs)
        address = _address(request)
        locked_already = getattr(request, "axes_locked_out", False) and self.address_locked(request)
        if address is None or locked_already:
            return  # a refused attempt while locked out does not extend the lockout
        key = ADDRESS_KEY.format(address)
        timeout = get_cache_timeout(request)
        if not self.cache.add(key, 1, timeout=timeout):
            try:
                self.cache.incr(key)
            except ValueError:  # expired between add and incr
                self.cache.add(key, 1, timeout=timeout)
            self.cache.touch(key, timeout=timeout)
        if self.address_locked(request):
            request.axes_locked_out = True
