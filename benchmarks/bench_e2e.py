"""(4) End to end (placeholder until written)."""

from __future__ import annotations

from typing import Any

__all__ = ["BENCHMARKS"]

BENCHMARKS: list[Any] = []
