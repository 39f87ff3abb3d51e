"""Creating, using and revoking API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from tokens.models import ApiToken

KEY_PREFIX = "cb_"
SHOWN_PREFIX_LENGTH = 10
# Writing last use on every request would turn each API read into a write; a minute is
# precise enough to tell a token that is in use from one that is not.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    key: str


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user: Any, name: str, expires_in_days: int | None = None) -> NewToken:
    """A new token for `user`; the key is in the result and nowhere else.

    `expires_in_days` None takes the default (COREBOARD_TOKEN_EXPIRY_DAYS); 0 never expires.
    """
    days = settings.COREBOARD_TOKEN_EXPIRY_DAYS if expires_in_days is None else expires_in_days
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[:SHOWN_PREFIX_LENGTH],
        digest=token_digest(key),
        expires_at=timezone.now() + timedelta(days=days) if days else None,
    )
    return NewToken(token=token, key=key)


def token_authenticate(*, key: str) -> ApiToken | None:
    """The live token with this key (not expired, its user active), its last use recorded."""
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(key), user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_revoke(*, token: ApiToken) -> None:
    token.delete()


def tokens_revoke_for_user(*, user: Any) -> int:
    """Delete every token of `user` (their password changed: tokens.signals); how many."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


def tokens_visible_to(user: Any) -> Any:
    """Staff see everyone's tokens; everybody else their own."""
    tokens = ApiToken.objects.select_related("user")
    return tokens if user.is_staff else tokens.filter(user=user)
