"""A password change revokes the person's API tokens (COREBOARD_PASSWORD_CHANGE_REVOKES_TOKENS).

A password change ends a person's sessions (Django's session hash); a token made while
someone else knew the password should end with them. Detected on the user row itself, so
every way to change a password counts: the password change page, the admin, `manage.py
changepassword`, a new hash assigned in code. A hash that Django upgrades at login
(`check_password`'s rehash) is the same password and revokes nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from tokens import services

User = get_user_model()


def _is_rehash(user: Any, update_fields: Any) -> bool:
    # check_password's setter saves only the password, with set_password's raw copy cleared.
    return (
        update_fields is not None
        and set(update_fields) == {"password"}
        and (getattr(user, "_password", None) is None)
    )


@receiver(pre_save, sender=User, dispatch_uid="tokens.password_change_noticed")
def password_change_noticed(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    instance._coreboard_password_changed = False
    if raw or instance.pk is None or not settings.COREBOARD_PASSWORD_CHANGE_REVOKES_TOKENS:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    if _is_rehash(instance, update_fields):
        return
    stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    instance._coreboard_password_changed = stored is not None and stored != instance.password


@receiver(post_save, sender=User, dispatch_uid="tokens.password_change_revokes_tokens")
def password_change_revokes_tokens(sender: Any, instance: Any, **kwargs: Any) -> None:
    if getattr(instance, "_coreboard_password_changed", False):
        instance._coreboard_password_changed = False
        services.tokens_revoke_for_user(user=instance)
