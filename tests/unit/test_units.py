"""`parse_duration` and `parse_size`: every accepted form and every refusal, as tables."""

from __future__ import annotations

import pytest

from minirepo.units import duration_forms, parse_duration, parse_size, size_forms

DAY = 86400


@pytest.mark.parametrize(
    ("value", "unit", "seconds"),
    [
        ("30s", "s", 30.0),
        ("10m", "s", 600.0),
        ("1.5h", "s", 5400.0),
        ("90d", "s", 90 * DAY),
        ("2w", "s", 14 * DAY),
        ("0s", "s", 0.0),
        ("0", "s", 0.0),
        ("0.25", "s", 0.25),
        ("0.1h", "s", 360.0),  # exact: not 360.00000000000006
        ("10 m", "s", 600.0),
        ("  10m\n", "s", 600.0),
        ("1_000s", "s", 1000.0),
        ("1_000", "s", 1000.0),
        ("1_000.000_5", "s", 1000.0005),
        ("007", "s", 7.0),
        # a plain number keeps the caller's unit; a suffix wins over it
        ("90", "d", 90 * DAY),
        ("90d", "m", 90 * DAY),
        ("30s", "d", 30.0),
        ("2", "w", 14 * DAY),
        ("1.5", "m", 90.0),
        ("3", "h", 3 * 3600.0),
        (90, "d", 90 * DAY),
        (120, "s", 120.0),
        (0, "s", 0.0),
        (0.5, "s", 0.5),
        (1.5, "m", 90.0),
        (-0.0, "s", 0.0),
    ],
)
def test_durations(value: str | int | float, unit: str, seconds: float) -> None:
    result = parse_duration(value, unit)
    assert result == seconds
    assert isinstance(result, float)


def test_duration_default_unit_is_seconds() -> None:
    assert parse_duration("42") == 42.0
    assert parse_duration(42) == 42.0


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-1", "negative"),
        ("-1d", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (float("-inf"), "not a finite number"),
        ("nan", "not understood"),
        ("inf", "not understood"),
        ("infinity", "not understood"),
        (True, "a boolean"),
        (False, "a boolean"),
        ("10x", "unknown unit 'x'"),
        ("10M", "unknown unit 'M'"),  # minutes or months? refused, not guessed
        ("10H", "unknown unit 'H'"),
        ("10sec", "unknown unit 'sec'"),
        ("10min", "unknown unit 'min'"),
        ("10days", "unknown unit 'days'"),
        ("10ms", "unknown unit 'ms'"),
        ("d", "not understood"),
        ("10 d x", "not understood"),
        ("10  d", "not understood"),
        ("1d2h", "not understood"),
        ("+5", "not understood"),
        ("1e3", "not understood"),
        (".5", "not understood"),
        ("5.", "not understood"),
        ("1__000", "not understood"),
        ("_1", "not understood"),
        ("1_", "not understood"),
        ("1,5h", "not understood"),
        ("٣s", "not understood"),  # an Arabic-Indic digit: \d would take it, we must not
        ("9" * 400 + "w", "too large"),
        (None, "a NoneType"),
        ([1], "a list"),
    ],
)
def test_bad_durations(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as info:
        parse_duration(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"({problem})" in message
    assert duration_forms("s") in message  # every refusal names the accepted forms
    assert "\n" not in message


def test_duration_message_names_the_plain_unit() -> None:
    with pytest.raises(ValueError, match="a number of days, or a number with a unit s, m, h"):
        parse_duration("soon", "d")


@pytest.mark.parametrize("unit", ["", "x", "S", "sec", "ms", "M"])
def test_unknown_default_duration_unit(unit: str) -> None:
    with pytest.raises(ValueError, match="unknown duration unit"):
        parse_duration("1", unit)


KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("value", "unit", "size"),
    [
        ("0", "B", 0),
        ("1", "B", 1),
        ("1000", "B", 1000),
        ("1_000_000", "B", 1_000_000),
        ("10B", "B", 10),
        ("10KB", "B", 10_000),
        ("10MB", "B", 10_000_000),
        ("10GB", "B", 10_000_000_000),
        ("10TB", "B", 10_000_000_000_000),
        ("10KiB", "B", 10 * KIB),
        ("10MiB", "B", 10 * MIB),
        ("10GiB", "B", 10 * GIB),
        ("10TiB", "B", 10 * TIB),
        ("10 GiB", "B", 10 * GIB),
        (" 10GiB ", "B", 10 * GIB),
        ("10gib", "B", 10 * GIB),
        ("10GIB", "B", 10 * GIB),
        ("10kb", "B", 10_000),
        ("10Kb", "B", 10_000),
        ("10b", "B", 10),
        ("1.5KiB", "B", 1536),
        ("1.5GB", "B", 1_500_000_000),
        ("0.5MiB", "B", MIB // 2),
        ("4MiB", "B", 4 * MIB),
        ("1_024 KiB", "B", MIB),
        # a plain number keeps the caller's unit; a suffix wins over it
        ("4", "MiB", 4 * MIB),
        ("4", "mib", 4 * MIB),
        ("4B", "MiB", 4),
        ("1.5", "KiB", 1536),
        (1024, "B", 1024),
        (4, "GiB", 4 * GIB),
        (0, "B", 0),
    ],
)
def test_sizes(value: str | int, unit: str, size: int) -> None:
    result = parse_size(value, unit)
    assert result == size
    assert type(result) is int


def test_size_default_unit_is_bytes() -> None:
    assert parse_size("4096") == 4096
    assert parse_size(4096) == 4096


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "empty"),
        (" ", "empty"),
        ("-1", "negative"),
        ("-1GiB", "negative"),
        (-1, "negative"),
        (True, "a boolean"),
        (False, "a boolean"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        ("nan", "not understood"),
        ("inf", "not understood"),
        ("10G", "unknown unit 'G'"),
        ("10K", "unknown unit 'K'"),
        ("10k", "unknown unit 'k'"),
        ("10PB", "unknown unit 'PB'"),
        ("10PiB", "unknown unit 'PiB'"),
        ("10bytes", "unknown unit 'bytes'"),
        ("10d", "unknown unit 'd'"),
        ("GiB", "not understood"),
        ("10  GiB", "not understood"),
        ("1e9", "not understood"),
        ("1,5GiB", "not understood"),
        ("1__000", "not understood"),
        ("+1", "not understood"),
        ("1.5", "not a whole number of bytes"),
        ("0.1KiB", "not a whole number of bytes"),
        ("1.0001KB", "not a whole number of bytes"),
        (1.5, "not a whole number of bytes"),
        (None, "a NoneType"),
        (b"10", "a bytes"),
    ],
)
def test_bad_sizes(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match="is not a size") as info:
        parse_size(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"({problem})" in message
    assert size_forms("B") in message  # every refusal names the accepted forms
    assert "\n" not in message


def test_size_message_names_the_plain_unit() -> None:
    with pytest.raises(ValueError, match="a whole number of MiB, or a number with a unit B, KB"):
        parse_size("big", "MiB")


@pytest.mark.parametrize("unit", ["", "x", "K", "G", "PiB", "bytes"])
def test_unknown_default_size_unit(unit: str) -> None:
    with pytest.raises(ValueError, match="unknown size unit"):
        parse_size("1", unit)


def test_forms_name_every_unit() -> None:
    for unit in ("s", "m", "h", "d", "w"):
        assert f" {unit}" in duration_forms() or f"{unit}," in duration_forms()
    for unit in ("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"):
        assert unit in size_forms()
