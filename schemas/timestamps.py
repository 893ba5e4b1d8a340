"""RFC 3339 timestamps exactly as the seed (chrono `DateTime<Utc>` through serde) writes them.

Output is UTC ending in `Z`; the fraction is the shortest of 0, 3, 6 or 9 digits that is exact.
Input accepts any RFC 3339 offset and normalizes it to UTC. Nanoseconds are kept, which is why
this does not go through `datetime` alone (it stops at microseconds).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from schemas.errors import DecodeError

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# Already canonical: UTC `Z` and a 0/3/6/9-digit fraction. Checked first so that the common
# case costs one regex match and no arithmetic.
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3}|\.\d{6}|\.\d{9})?Z\Z")


def format_fraction(nanos: int) -> str:
    """The seed's fraction rule: '' for whole seconds, else the shortest exact 3/6/9 digits."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def normalize(value: object) -> str:
    """Return the canonical UTC form of an RFC 3339 string, or raise DecodeError."""
    if not isinstance(value, str):
        raise DecodeError(f"timestamp must be an RFC 3339 string, got {type(value).__name__}")
    # Canonical and shortest: a fraction (past the 20 characters of a whole second) of 3, 6 or
    # 9 digits is redundant exactly when its last three are zeros (`_has_redundant_fraction`).
    if _CANONICAL.match(value) and not (len(value) > 20 and value[-4:-1] == "000"):
        _check_fields(value)
        return value
    return _reformat(value)


# Minutes (`YYYY-MM-DDTHH:MM`) the calendar accepted: records come in time order, so most
# timestamps fall in a minute already checked. Bounded: cleared when full.
_VALID_MINUTES: set[str] = set()
_VALID_MINUTES_SIZE = 4096


def _check_fields(value: str) -> None:
    # The regex checks the shape only; the calendar checks month 13 or February 30.
    if value[:16] in _VALID_MINUTES and value[17:19] < "60":
        return
    try:
        datetime(
            int(value[0:4]), int(value[5:7]), int(value[8:10]),
            int(value[11:13]), int(value[14:16]), int(value[17:19]),
        )  # fmt: skip
    except ValueError as exc:
        raise DecodeError(f"timestamp out of range: {value[:64]!r} ({exc})") from None
    if len(_VALID_MINUTES) >= _VALID_MINUTES_SIZE:
        _VALID_MINUTES.clear()
    _VALID_MINUTES.add(value[:16])


def _has_redundant_fraction(value: str) -> bool:
    # ".000" alone is exact-but-not-shortest (whole second); ".123000" should be ".123".
    dot = value.find(".")
    if dot < 0:
        return False
    digits = value[dot + 1 : -1]
    return digits != format_fraction(int(digits.ljust(9, "0")))[1:]


def _reformat(value: str) -> str:
    m = _RFC3339.match(value)
    if m is None:
        raise DecodeError(f"timestamp is not RFC 3339: {value[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, offset = m.group(7), m.group(8)
    try:
        base = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise DecodeError(f"timestamp out of range: {value[:64]!r} ({exc})") from None
    # Digits past nanoseconds are truncated, as chrono does.
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise DecodeError(f"timestamp offset out of range: {value[:64]!r}")
        try:
            base -= sign * timedelta(hours=hours, minutes=minutes)
        except OverflowError:
            raise DecodeError(f"timestamp out of range: {value[:64]!r}") from None
    return (
        f"{base.year:04d}-{base.month:02d}-{base.day:02d}T"
        f"{base.hour:02d}:{base.minute:02d}:{base.second:02d}{format_fraction(nanos)}Z"
    )


_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()
_NANOS_PER_DAY = 86_400 * 1_000_000_000
# The first and last instants RFC 3339 (four-digit years) can write, in ns since the epoch.
MIN_NANOS = (1 - _EPOCH_ORDINAL) * _NANOS_PER_DAY
MAX_NANOS = (datetime(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * _NANOS_PER_DAY - 1


def to_nanos(value: str) -> int:
    """Nanoseconds since the Unix epoch of a canonical timestamp (`normalize`'s output).

    Timestamps are compared as numbers, never as text: "06:00:00.5Z" sorts before "06:00:00Z".
    """
    days = datetime(int(value[0:4]), int(value[5:7]), int(value[8:10])).toordinal()
    seconds = int(value[11:13]) * 3600 + int(value[14:16]) * 60 + int(value[17:19])
    dot = value.find(".")
    nanos = int(value[dot + 1 : -1].ljust(9, "0")) if dot >= 0 else 0
    return (days - _EPOCH_ORDINAL) * _NANOS_PER_DAY + seconds * 1_000_000_000 + nanos


def from_nanos(nanos: int) -> str:
    """The canonical timestamp of `nanos` since the Unix epoch (MIN_NANOS..MAX_NANOS)."""
    if not MIN_NANOS <= nanos <= MAX_NANOS:
        raise ValueError(f"timestamp out of range: {nanos} ns since the epoch")
    days, rest = divmod(nanos, _NANOS_PER_DAY)
    seconds, fraction = divmod(rest, 1_000_000_000)
    date = datetime.fromordinal(_EPOCH_ORDINAL + days)
    hour, minute, second = seconds // 3600, seconds // 60 % 60, seconds % 60
    return (
        f"{date.year:04d}-{date.month:02d}-{date.day:02d}T"
        f"{hour:02d}:{minute:02d}:{second:02d}{format_fraction(fraction)}Z"
    )
