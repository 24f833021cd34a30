"""Time zones people choose: IANA names (``Asia/Tokyo``) this system's tz database knows."""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The longest zone name accepted (the column's width).
MAX_ZONE_NAME = 64


@cache
def known_time_zone(name: str) -> bool:
    """Whether ``name`` is a zone of the tz database; a path-like name is refused before zoneinfo reads a file."""
    if not name or len(name) > MAX_ZONE_NAME or name.startswith(("/", ".")) or ".." in name or "\\" in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
