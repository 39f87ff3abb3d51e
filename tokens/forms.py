from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

MAX_EXPIRY_DAYS = 3650


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What the token is for, e.g. “laptop CLI” or “Prometheus”."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"] = forms.IntegerField(
            label="Expires in (days)",
            min_value=0,
            max_value=MAX_EXPIRY_DAYS,
            initial=settings.COREBOARD_TOKEN_EXPIRY_DAYS,
            help_text="0 means it never expires.",
        )
