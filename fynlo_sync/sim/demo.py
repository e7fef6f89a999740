"""``fynlo demo`` (being built)."""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    print("fynlo demo: not built yet")
    return 2
