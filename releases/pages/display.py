"""How times and measured figures read on the pages.

Times are formatted here rather than with template filters: a page lists up to fifty of them, and
Django's date and timesince filters cost tens of microseconds each where these cost one or two.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html import escape

from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# (seconds in the unit, its name) from the largest down, for "3 hours ago".
UNITS = ((365 * 86400, "year"), (30 * 86400, "month"), (86400, "day"), (3600, "hour"), (60, "minute"))


def span(seconds: float) -> str | None:
    """A length of time in its largest whole unit ("5 minutes", "2 days"); None under a minute."""
    for size, unit in UNITS:
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return None


def ago(at: datetime, now: datetime) -> str:
    """How long before `now`, in the largest whole unit: "just now", "5 minutes ago", "2 days ago"."""
    length = span((now - at).total_seconds())
    return f"{length} ago" if length else "just now"


def lasted(at: datetime | None, now: datetime | None = None, *, at_least: bool = False) -> SafeString:
    """How long something has gone on since `at` ("for 7 minutes"; "for over 3 days" when `at_least`, the
    record reaching back no further), with the moment it began as the title; "—" when unknown."""
    if at is None:
        return format_html("{}", "—")
    local = timezone.localtime(at)
    length = span(((now or timezone.now()) - at).total_seconds())
    text = f"for {'over ' if at_least else ''}{length}" if length else "for less than a minute"
    return format_html('<time datetime="{}" title="since {}">{}</time>', local.isoformat(),
                       local.strftime("%Y-%m-%d %H:%M:%S %Z"), text)


@dataclass(frozen=True)
class Moment:
    """A time as the pages show it: relative and absolute, in a <time> element."""

    iso: str
    absolute: str
    relative: str

    # Escaped with the standard library's html.escape, which is what format_html calls underneath: a page
    # shows up to fifty of these, and format_html's checks for lazy strings cost more than the escaping.

    def html(self) -> SafeString:
        """Relative, with the absolute time as its title: "5 minutes ago"."""
        iso, absolute, relative = escape(self.iso), escape(self.absolute), escape(self.relative)
        return mark_safe(f'<time datetime="{iso}" title="{absolute}">{relative}</time>')  # noqa: S308 - escaped

    def full(self) -> SafeString:
        """Absolute, then relative: "2026-03-01 03:15:00 UTC (5 minutes ago)"."""
        iso, absolute, relative = escape(self.iso), escape(self.absolute), escape(self.relative)
        return mark_safe(f'<span><time datetime="{iso}" title="{relative}">{absolute}</time> '  # noqa: S308 - escaped
                         f'<span class="muted">({relative})</span></span>')


def moment(at: datetime | None, now: datetime | None = None) -> Moment | None:
    if at is None:
        return None
    local = timezone.localtime(at)
    return Moment(iso=local.isoformat(), absolute=local.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  relative=ago(at, now or timezone.now()))


def stamp(rows: Iterable, *fields: str) -> list:
    """The rows, each given `when`: {field: Moment} for the named datetime fields."""
    now = timezone.now()
    rows = list(rows)
    for row in rows:
        row.when = {name: moment(getattr(row, name), now) for name in fields}
    return rows


def figure(value: float, unit: str) -> str:
    """A metric's value with its unit, as a person reads it: sizes in KB/MB, times in ms."""
    if unit in ("bytes", "B"):
        return filesizeformat(value)
    if unit == "ms":
        return f"{value:.3g} ms" if value < 100 else f"{value:,.0f} ms"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{text} {unit}" if unit and unit != "ratio" else text


def duration(seconds: float | None) -> str:
    """A span of time in its largest fitting unit: "45 s", "12 min", "3.5 h", "2.1 days"; "—" if unknown."""
    if seconds is None:
        return "—"
    for size, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
