"""Shared pieces of the subcommands: argparse value types and the stderr progress bar."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

BAR_WIDTH = 30


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_int_or_auto(text: str) -> int | str:
    """argparse type: an integer >= 1 or the word ``auto``."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def progress_bar(label: str, unit: str, enabled: bool | None = None) -> Callable[[float, float], None] | None:
    """A ``show(done, total)`` that redraws one stderr line, or None when stderr is not a terminal
    (pipes and CI logs stay clean)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None

    def show(done: float, total: float) -> None:
        filled = int(BAR_WIDTH * min(1.0, done / total)) if total else BAR_WIDTH
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:g}/{total:g} {unit}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show
