"""What a benchmark returns: a figure beside its same-run baseline, their ratio, a target.

Every ratio is a *speed* ratio, ours over the baseline's: ``1.0`` means as fast as the
baseline, ``0.5`` half as fast, ``10`` ten times faster. For latencies that is the baseline's
latency over ours. A target is either a minimum ratio or a maximum absolute value of a
named figure (a p99 in milliseconds, a convergence time in seconds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Measure",
    "Result",
    "Status",
    "Target",
    "percentile",
    "quantiles",
    "speed_ratio",
]

Status = Literal["ok", "skipped", "error"]


@dataclass(frozen=True, slots=True)
class Measure:
    """One figure: what it is, its value and its unit (``ops/s``, ``ms``, ``s``)."""

    label: str
    value: float
    unit: str

    def text(self) -> str:
        return f"{fmt(self.value)} {self.unit}"


@dataclass(frozen=True, slots=True)
class Target:
    """``kind="ratio_min"``: the speed ratio must be at least ``value``.
    ``kind="max"``: the figure ``metric`` (in ``details``, or the main figure when
    ``metric`` is empty) must be at most ``value`` in ``unit``."""

    text: str
    kind: Literal["ratio_min", "max"]
    value: float
    metric: str = ""
    unit: str = ""


@dataclass(slots=True)
class Result:
    key: str
    number: int
    title: str
    status: Status = "ok"
    figure: Measure | None = None
    baseline: Measure | None = None
    ratio: float | None = None
    target: Target | None = None
    met: bool | None = None
    verdict: str = ""
    reason: str = ""
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: Latency distributions to draw: name -> 101 quantiles (0th..100th) in milliseconds.
    distributions: dict[str, list[float]] = field(default_factory=dict)

    def judge(self) -> None:
        """Fill ``met`` and ``verdict`` from the target."""
        target = self.target
        if target is None or self.status != "ok":
            return
        if target.kind == "ratio_min":
            if self.ratio is None:
                return
            self.met = self.ratio >= target.value
            how = self.ratio / target.value
            self.verdict = (
                f"met ({fmt(self.ratio)}x, target {fmt(target.value)}x)"
                if self.met
                else f"missed: {fmt(self.ratio)}x is {fmt(1 / how)}x short of {fmt(target.value)}x"
            )
            return
        actual = self.details.get(target.metric) if target.metric else None
        if actual is None and self.figure is not None and not target.metric:
            actual = self.figure.value
        if not isinstance(actual, int | float):
            return
        self.met = actual <= target.value
        self.verdict = (
            f"met ({fmt(actual)} {target.unit} <= {fmt(target.value)} {target.unit})"
            if self.met
            else f"missed: {fmt(actual)} {target.unit} is {fmt(actual / target.value)}x the "
            f"{fmt(target.value)} {target.unit} limit"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        fields = dict(data)
        for name in ("figure", "baseline"):
            if fields.get(name) is not None:
                fields[name] = Measure(**fields[name])
        if fields.get("target") is not None:
            fields["target"] = Target(**fields["target"])
        return cls(**fields)


def speed_ratio(ours_seconds: float, baseline_seconds: float) -> float:
    """Ours relative to the baseline when both did the same work: baseline time / ours."""
    return baseline_seconds / ours_seconds if ours_seconds > 0 else math.inf


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linear interpolation."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    frac = pos - low
    return float(sorted_values[low] * (1 - frac) + sorted_values[high] * frac)


def quantiles(values: Sequence[float]) -> list[float]:
    """101 quantiles (0th..100th percentile), rounded to microsecond-ish precision."""
    ordered = sorted(values)
    return [round(percentile(ordered, q), 6) for q in range(101)]


def fmt(value: float) -> str:
    """A figure to three significant digits, with thousands separators for big ones."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"
