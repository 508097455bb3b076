"""Values as people read them in tables: times, ages, durations, sizes, mappings.

JSON output keeps the raw values (epoch seconds, MiB); only tables use these.
"""

from __future__ import annotations

import datetime
from typing import Any


def human_time(at: float) -> str:
    """``2026-12-02T10:11:12Z``: an epoch time in UTC to the second; ``""`` for never."""
    if not at:
        return ""
    when = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def human_clock(at: float, day_of: float) -> str:
    """``10:11:12Z`` when ``at`` falls on the same UTC day as ``day_of``, else the full
    ``human_time``: compact times for rows under a header that shows the date."""
    full = human_time(at)
    return full[11:] if full and full[:10] == human_time(day_of)[:10] else full


def human_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, for tables."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def human_duration(seconds: float) -> str:
    """``0.4s``, ``42.0s``, ``3m 05s``, ``2h 10m``, ``1d 3h``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


_SIZES = (("TiB", 1024.0 ** 2), ("GiB", 1024.0), ("MiB", 1.0), ("KiB", 1 / 1024))


def human_bytes(mib: float) -> str:
    """``1.2 GiB``, ``512.0 MiB``, ``0 B`` from a size in MiB."""
    if mib <= 0:
        return "0 B"
    for unit, size in _SIZES:
        if mib >= size:
            return f"{mib / size:.1f} {unit}"
    return f"{mib * 1024 * 1024:.0f} B"


def human_value(value: Any) -> str:
    """A cell: ``yes``/``no`` for booleans, lists joined by commas, mappings as
    ``key: value, ...`` (nested values rendered the same way), ``""`` for None."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ", ".join(human_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {human_value(v)}" for k, v in value.items())
    return "" if value is None else str(value)
