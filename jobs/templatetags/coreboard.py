"""Template helpers shared by every page."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.filter
def local_time(value: datetime | None) -> SafeString | str:
    """A `<time>` that the page rewrites in the viewer's time zone (static/coreboard.js).

    The server writes UTC with its zone, so the text is right without JavaScript too; the
    script uses the one format of every page: `2026-11-26 09:12:03 GMT+1`.
    """
    if value is None:
        return "—"
    return format_html(
        '<time datetime="{}" class="local-time">{}</time>',
        value.isoformat(),
        value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
