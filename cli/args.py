"""Argument types shared by every `offeropt` command: each names the rule it enforces."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """In [0, 1]."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def gap_fraction(text: str) -> float:
    """In [0, 1): a relative gap."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def open_fraction(text: str) -> float:
    """In (0, 1): a quantile."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def explore_share(text: str) -> float:
    """In [0, MAX_EXPLORE]: the share of a segment's views that exploration may take."""
    from optimizer.solve.methods import MAX_EXPLORE

    value = float(text)
    if not 0 <= value <= MAX_EXPLORE:
        raise argparse.ArgumentTypeError(f"must be in [0, {MAX_EXPLORE:g}], got {text}")
    return value
