"""Template helpers shared by every page."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs import kinds
from jobs.views.presentation import duration_text

register = template.Library()

# Stands in for the id in `url_template`: no real id is this large.
_ID_PLACEHOLDER = 987_654_321_987


@register.filter
def local_time(value: datetime | str | None) -> SafeString | str:
    """A `<time>` that the page rewrites in the viewer's time zone (static/coreboard.mjs).

    The one way every page writes a moment: the server writes UTC with its zone, so the
    text is right without JavaScript too; the script uses the one format of every page,
    `2026-11-26 09:12:03 GMT+1` (static/lib/format.mjs formatTime). Takes a datetime or the
    ISO 8601 text the protocol's states carry.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return "—"
    if value is None:
        return "—"
    if value.tzinfo is None:
        # Django stores aware times (USE_TZ); a naive one is UTC by the same rule.
        value = value.replace(tzinfo=UTC)
    return format_html(
        '<time datetime="{}" class="local-time">{}</time>',
        value.isoformat(),
        value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


@register.filter
def kind_label(name: str) -> str:
    """A kind's label ("Burn CPU") from its name, as every page names a kind; a kind not
    installed here reads as its name."""
    try:
        return kinds.get(name).label
    except kinds.UnknownKind:
        return name


@register.filter
def duration(seconds: float | None) -> str:
    """A duration in the one format of every page (jobs/views/presentation.py)."""
    return duration_text(seconds)


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


@register.filter
def binary_bytes(value: int | None) -> str:
    """Bytes in binary units, as memory is counted and as the job page's script writes them
    (static/lib/format.mjs formatBytes): `512 MiB`, `1.5 GiB`; one decimal below ten."""
    if value is None:
        return "—"
    size = float(abs(value))
    unit = 0
    while size >= 1024 and unit < len(_BYTE_UNITS) - 1:
        size /= 1024
        unit += 1
    digits = 0 if unit == 0 or size >= 10 else 1
    text = f"{size:.{digits}f}"
    if float(text) >= 1024 and unit < len(_BYTE_UNITS) - 1:
        text, unit = "1.0", unit + 1
    return f"{'-' if value < 0 else ''}{text} {_BYTE_UNITS[unit]}"


@register.simple_tag
def socket_url(name: str, *args: object) -> str:
    """The path of a named websocket route (jobs/routing.py), for a page script to open."""
    return reverse(name, urlconf="jobs.sockets.routing", args=args)


@register.simple_tag
def url_template(name: str, field: str = "id") -> str:
    """A URL with `{field}` where its one integer argument goes, for a page script to fill in
    (static/lib/urls.mjs urlFill): e.g. `/jobs/{id}/` for `jobs:detail`."""
    return reverse(name, args=[_ID_PLACEHOLDER]).replace(str(_ID_PLACEHOLDER), f"{{{field}}}")
