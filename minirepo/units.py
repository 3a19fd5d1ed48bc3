"""Durations and sizes as people write them: `90d`, `10m`, `1.5h`, `10GiB`, `500 MB`.

One grammar for every flag and setting, so `--expires 90d` and `MINIREPO_MAX_UPLOAD_SIZE=10GiB`
read alike. A plain number keeps the unit its flag or setting had before units existed (the
caller names it), so values written then still mean what they meant. This is a floor module:
stdlib only, anyone may import it.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# Lower case only: `10M` could be read as ten months, and a token that expires in ten
# minutes instead is a mistake nobody sees until it bites.
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
UNIT_NAMES = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Case-insensitive (keys are lower case): nobody means bits in a size limit.
BYTES_PER_UNIT = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
# ASCII digits (`\d` would take any script's), with single underscores between them as in
# Python and TOML, and an optional fraction; no sign, no exponent. Then an optional space
# and an optional unit.
_QUANTITY_RE = re.compile(r"([0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?) ?([A-Za-z]*)")


def duration_forms(unit: str = "s") -> str:
    """What `parse_duration` accepts, for error messages and help texts."""
    return (
        f"a number of {UNIT_NAMES[unit]}, or a number with a unit s, m, h, d or w "
        "(like 30s, 10m, 1.5h, 90d, 2w)"
    )


def size_forms(unit: str = "B") -> str:
    """What `parse_size` accepts, for error messages and help texts."""
    plain = "bytes" if unit.lower() == "b" else unit
    return (
        f"a whole number of {plain}, or a number with a unit B, KB, MB, GB, TB "
        "(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024) (like 500MB, 10 GiB)"
    )


def _quantity(value: object) -> tuple[Fraction, str]:
    """Split `value` into an exact, non-negative amount and its unit ("" when plain).

    Exact arithmetic, so `0.1h` is 360 seconds and `1.5GiB` a whole number of bytes.
    Raises ValueError with a short problem; the callers add what is accepted.
    """
    if isinstance(value, bool):  # before int: True is an int to Python, not to a person
        raise ValueError("a boolean")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        if value < 0:
            raise ValueError("negative")
        return Fraction(value), ""
    if not isinstance(value, str):
        raise ValueError(f"a {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("empty")
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        raise ValueError("negative" if text.startswith("-") else "not understood")
    number, unit = match.groups()
    return Fraction(number.replace("_", "")), unit


def parse_duration(value: str | int | float, unit: str = "s") -> float:
    """Seconds in `value`: `30s`, `10m`, `1.5h`, `90d`, `2w`; a plain number is in `unit`.

    `unit` is the flag's or setting's unit from before (`--expires 90` stays 90 days).
    A negative, NaN, infinite, empty or boolean value, or an unknown unit, raises a
    ValueError whose message names the accepted forms.
    """
    if unit not in SECONDS_PER_UNIT:
        raise ValueError(f"unknown duration unit {unit!r}: use one of s, m, h, d, w")
    try:
        amount, suffix = _quantity(value)
        if suffix and suffix not in SECONDS_PER_UNIT:
            raise ValueError(f"unknown unit {suffix!r}")
        seconds = float(amount * SECONDS_PER_UNIT[suffix or unit])
    except (ValueError, OverflowError) as exc:
        problem = "too large" if isinstance(exc, OverflowError) else str(exc)
        raise ValueError(
            f"{value!r} is not a duration ({problem}): use {duration_forms(unit)}"
        ) from exc
    return seconds


def parse_size(value: str | int, unit: str = "B") -> int:
    """Bytes in `value`: `500MB`, `10 GiB`, `1_000`; a plain number is in `unit`.

    A fraction is fine while the total is whole (`1.5KiB` is 1536 bytes); `0.1KiB` is
    refused rather than rounded, so the limit in force is the one written. The same
    refusals as `parse_duration`, with the same kind of message.
    """
    if unit.lower() not in BYTES_PER_UNIT:
        raise ValueError(f"unknown size unit {unit!r}: use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
    try:
        amount, suffix = _quantity(value)
        factor = BYTES_PER_UNIT.get((suffix or unit).lower())
        if factor is None:
            raise ValueError(f"unknown unit {suffix!r}")
        total = amount * factor
        if total.denominator != 1:
            raise ValueError("not a whole number of bytes")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a size ({exc}): use {size_forms(unit)}") from exc
    return total.numerator


def format_size(size: int) -> str:
    """`size` bytes as people read them in a refusal: `1 GiB`, `4 MiB`, `1.5 KiB`, `100 B`."""
    for name, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.4g} {name}"
    return f"{size} B"
