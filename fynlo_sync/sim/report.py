"""The demo's report: the figures as JSON, a Markdown and an HTML page, and the timeline
picture (SVG, written by hand: one row per terminal, its outages and every sync)."""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fynlo_sync.sim.service import Audit, Desk, Service

__all__ = ["Report", "TerminalFigures", "build"]


@dataclass(frozen=True, slots=True)
class TerminalFigures:
    name: str
    node_id: str
    ops_made: int
    syncs_ok: int
    syncs_failed: int
    sync_ms_median: float
    sync_ms_max: float
    offline_s: float
    catch_up_ms: float | None
    pokes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_id": self.node_id,
            "ops_made": self.ops_made,
            "syncs_ok": self.syncs_ok,
            "syncs_failed": self.syncs_failed,
            "sync_ms_median": round(self.sync_ms_median, 1),
            "sync_ms_max": round(self.sync_ms_max, 1),
            "offline_s": round(self.offline_s, 2),
            "catch_up_ms": None if self.catch_up_ms is None else round(self.catch_up_ms, 1),
            "pokes": self.pokes,
        }


@dataclass(slots=True)
class Report:
    seed: int
    server: str
    audit: Audit
    terminals: list[TerminalFigures]
    seconds: float
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        a = self.audit
        return {
            "converged": a.converged,
            "seed": self.seed,
            "terminals": len(self.terminals),
            "ops_made": a.ops_made,
            "ops_pushed": a.ops_pushed,
            "ops_applied": a.statuses["applied"],
            "ops_merged": a.statuses["merged"],
            "ops_lost": a.ops_lost,
            "ops_duplicated": a.ops_duplicated,
            "conflicts": a.parked,
            "conflicts_resolved": a.resolved,
            "conflicts_open": a.open_conflicts,
            "rejected": a.statuses["rejected"],
            "rejected_reasons": dict(sorted(a.rejected_reasons.items())),
            "orders": a.orders,
            "orders_total_minor": a.orders_total_minor,
            "totals_add_up": a.totals_ok,
            **{
                key: a.money[key]
                for key in ("money_adds_up", "payments", "double_charges", "ledger_balanced")
                if key in a.money
            },
            **({"money": a.money["money"]} if a.money else {}),
            "audited_against": "server op log" if a.exact else "server feed + terminal outcomes",
            "differences": a.differences,
            "sync": {t.name: t.to_json() for t in self.terminals},
            "server": self.server,
            "seconds": round(self.seconds, 2),
            "files": self.files,
        }

    # ------------------------------------------------------------------ pages

    def rows(self) -> list[tuple[str, str]]:
        a = self.audit
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(a.rejected_reasons.items()))
        return [
            ("ops made", str(a.ops_made)),
            ("ops pushed (answered)", str(a.ops_pushed)),
            ("applied", str(a.statuses["applied"])),
            ("merged (field-level)", str(a.statuses["merged"])),
            ("parked as conflicts", f"{a.parked} ({a.resolved} resolved, {a.open_conflicts} open)"),
            ("rejected", f"{a.statuses['rejected']}" + (f" ({reasons})" if reasons else "")),
            ("lost", str(a.ops_lost)),
            ("duplicated", str(a.ops_duplicated)),
            ("converged", "yes" if a.converged else "NO"),
            ("orders / their totals add up", f"{a.orders} / {'yes' if a.totals_ok else 'NO'}"),
            ("audited against", "the server's op log" if a.exact else "the server's feed"),
            *_money_rows(a.money),
        ]

    def markdown(self, picture: str) -> str:
        out = [
            f"# fynlo demo: seed {self.seed}, {len(self.terminals)} terminals",
            "",
            f"Server: {self.server}. Took {self.seconds:.1f} s.",
            "",
            f"![timeline: outages and syncs per terminal]({picture})",
            "",
            "| | |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in self.rows()),
            "",
            *(["![revenue per day by method](revenue.svg)", ""] if self.audit.money else []),
            "## Sync time per terminal",
            "",
            "| terminal | ops made | syncs ok | failed | median ms | max ms | offline s "
            "| catch-up ms | pokes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in self.terminals:
            out.append(
                f"| {t.name} | {t.ops_made} | {t.syncs_ok} | {t.syncs_failed} | "
                f"{t.sync_ms_median:.1f} | {t.sync_ms_max:.1f} | {t.offline_s:.1f} | "
                f"{'' if t.catch_up_ms is None else f'{t.catch_up_ms:.0f}'} | {t.pokes} |"
            )
        if self.audit.differences:
            out += ["", "## Differences", "", *(f"- {d}" for d in self.audit.differences)]
        return "\n".join(out) + "\n"

    def html_page(self, svg: str) -> str:
        e = html.escape
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in self.rows())
        head = (
            "<tr><th>terminal</th><th>ops made</th><th>syncs ok</th><th>failed</th>"
            "<th>median ms</th><th>max ms</th><th>offline s</th><th>catch-up ms</th>"
            "<th>pokes</th></tr>"
        )
        body = "".join(
            f"<tr><td>{e(t.name)}</td><td>{t.ops_made}</td><td>{t.syncs_ok}</td>"
            f"<td>{t.syncs_failed}</td><td>{t.sync_ms_median:.1f}</td><td>{t.sync_ms_max:.1f}</td>"
            f"<td>{t.offline_s:.1f}</td>"
            f"<td>{'' if t.catch_up_ms is None else f'{t.catch_up_ms:.0f}'}</td>"
            f"<td>{t.pokes}</td></tr>"
            for t in self.terminals
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>fynlo demo, seed {self.seed}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
            "table{border-collapse:collapse;margin:1em 0}"
            "th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}"
            "</style></head><body>"
            f"<h1>fynlo demo: seed {self.seed}, {len(self.terminals)} terminals</h1>"
            f"<p>Server: {e(self.server)}. Took {self.seconds:.1f} s.</p>{svg}"
            f"<table>{rows}</table><h2>Sync time per terminal</h2>"
            f"<table>{head}{body}</table></body></html>\n"
        )

    def write(self, folder: Path, service: Service) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        svg = timeline_svg(service, self)
        files = {
            "picture": folder / "timeline.svg",
            "markdown": folder / "report.md",
            "html": folder / "report.html",
        }
        files["picture"].write_text(svg, encoding="utf-8")
        files["markdown"].write_text(self.markdown("timeline.svg"), encoding="utf-8")
        files["html"].write_text(self.html_page(svg), encoding="utf-8")
        if self.audit.money:
            from fynlo_sync.domains.payments.render import revenue_svg

            files["revenue_picture"] = folder / "revenue.svg"
            files["revenue_picture"].write_text(
                revenue_svg(self.audit.money["revenue_rows"], "Demo bistro: revenue by method"),
                encoding="utf-8",
            )
        self.files = {k: str(v) for k, v in files.items()}
        return self.files


def _money_rows(money: dict[str, Any]) -> list[tuple[str, str]]:
    """The money lines of the report (none without the payments plugin)."""
    if not money:
        return []
    m = money["money"]
    drawers = "; ".join(
        f"{name.rsplit('.', 1)[-1]} counted {d['counted']} of {d['expected']} "
        f"({d['difference']:+d})"
        for name, d in sorted(m["drawers"].items())
        if d["counted"] is not None
    )
    return [
        ("money adds up", "yes" if money["money_adds_up"] else "NO"),
        ("payments by method", ", ".join(f"{k} {v}" for k, v in money["payments"].items())),
        ("collected per method", ", ".join(f"{k} {v}" for k, v in m["collected"].items())),
        ("tips (passed in full)", str(m["tips"])),
        ("processing fees / platform revenue", f"{m['processing_fees']} / {m['platform_revenue']}"),
        (
            "refunds",
            f"{m['refunds']} ({m['overpayments']} overpayments found at sync, "
            f"{m['refunds_due_open']} still due)",
        ),
        ("voids (authorised, never captured)", str(m["voids"])),
        ("double charges", str(money["double_charges"])),
        ("ledger balanced", "yes" if money["ledger_balanced"] else "NO"),
        ("drawers (Z-reports)", drawers or "none closed"),
    ]


def _figures(desk: Desk, end: float) -> TerminalFigures:
    ok = [s.ms for s in desk.syncs if s.ok]
    offline = sum((b if b >= 0 else end) - a for a, b in desk.outages)
    return TerminalFigures(
        name=desk.name,
        node_id=desk.node_id,
        ops_made=len(desk.made),
        syncs_ok=len(ok),
        syncs_failed=sum(1 for s in desk.syncs if not s.ok),
        sync_ms_median=statistics.median(ok) if ok else 0.0,
        sync_ms_max=max(ok, default=0.0),
        offline_s=offline,
        catch_up_ms=max(desk.catch_up_ms) if desk.catch_up_ms else None,
        pokes=desk.pokes,
    )


def build(service: Service, audit: Audit, *, server: str) -> Report:
    end = service.now()
    return Report(
        seed=service.seed,
        server=server,
        audit=audit,
        terminals=[_figures(d, end) for d in service.desks],
        seconds=end,
    )


# ---------------------------------------------------------------------- the picture

_LEFT, _RIGHT, _TOP, _ROW, _WIDTH = 120, 30, 74, 40, 1000


def timeline_svg(service: Service, report: Report) -> str:
    end = max(service.now(), 0.001)
    span = _WIDTH - _LEFT - _RIGHT
    rows = len(service.desks)
    height = _TOP + rows * _ROW + 70

    def x(t: float) -> float:
        return _LEFT + span * max(0.0, min(t, end)) / end

    e = html.escape
    a = report.audit
    verdict = "converged" if a.converged else "DID NOT CONVERGE"
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' height='{height}' "
        f"viewBox='0 0 {_WIDTH} {height}' font-family='Helvetica, Arial, sans-serif'>",
        f"<rect width='{_WIDTH}' height='{height}' fill='white'/>",
        f"<text x='{_LEFT}' y='24' font-size='17' font-weight='bold'>fynlo demo: "
        f"{rows} terminals, seed {service.seed}: {verdict}</text>",
        f"<text x='{_LEFT}' y='44' font-size='12' fill='#444'>{a.ops_made} ops made, "
        f"{a.statuses['applied']} applied, {a.statuses['merged']} merged, {a.parked} parked, "
        f"{a.statuses['rejected']} rejected, {a.ops_lost} lost, {a.ops_duplicated} duplicated"
        "</text>",
    ]
    bottom = _TOP + rows * _ROW
    for number, (phase, at) in enumerate(service.phases):
        px = x(at)
        parts.append(
            f"<line x1='{px:.1f}' y1='{_TOP - 14}' x2='{px:.1f}' y2='{bottom}' "
            "stroke='#999' stroke-dasharray='3,3'/>"
        )
        dy = _TOP - 18 if number % 2 == 0 else _TOP - 4
        parts.append(
            f"<text x='{px + 3:.1f}' y='{dy}' font-size='11' fill='#555'>{e(phase)}</text>"
        )
    for row, desk in enumerate(service.desks):
        top = _TOP + row * _ROW
        mid = top + _ROW / 2
        parts.append(
            f"<text x='{_LEFT - 10}' y='{mid + 4:.1f}' font-size='13' text-anchor='end'>"
            f"{e(desk.name)}</text>"
        )
        parts.append(
            f"<line x1='{_LEFT}' y1='{mid:.1f}' x2='{_LEFT + span}' y2='{mid:.1f}' "
            "stroke='#ddd' stroke-width='2'/>"
        )
        for start, stop in desk.outages:
            x0, x1 = x(start), x(stop if stop >= 0 else end)
            parts.append(
                f"<rect x='{x0:.1f}' y='{top + 5}' width='{max(x1 - x0, 1):.1f}' "
                f"height='{_ROW - 10}' fill='#e53935' fill-opacity='0.18' stroke='#e53935'/>"
            )
            label = f"offline {((stop if stop >= 0 else end) - start):.1f} s"
            parts.append(
                f"<text x='{x0 + 4:.1f}' y='{top + 16}' font-size='10' fill='#b71c1c'>"
                f"{label}</text>"
            )
        for sync in desk.syncs:
            sx = x(sync.at)
            if not sync.ok:
                parts.append(
                    f"<path d='M{sx - 3:.1f},{mid - 3:.1f} l6,6 m0,-6 l-6,6' stroke='#9e9e9e' "
                    "stroke-width='1.5'/>"
                )
            elif sync.why == "reconnect":
                parts.append(
                    f"<circle cx='{sx:.1f}' cy='{mid:.1f}' r='6' fill='#1e88e5'>"
                    f"<title>caught up: pushed {sync.pushed}, pulled {sync.pulled}, "
                    f"{sync.ms:.0f} ms</title></circle>"
                )
                parts.append(
                    f"<text x='{sx + 8:.1f}' y='{mid + 14:.1f}' font-size='10' fill='#0d47a1'>"
                    f"↑{sync.pushed} ↓{sync.pulled}</text>"
                )
            else:
                radius = 2.0 + min(3.0, (sync.pushed + sync.pulled) / 8)
                parts.append(
                    f"<circle cx='{sx:.1f}' cy='{mid:.1f}' r='{radius:.1f}' fill='#43a047' "
                    "fill-opacity='0.8'/>"
                )
    axis = bottom + 16
    for tick in range(int(end) + 1):
        if end > 20 and tick % 5:
            continue
        tx = x(float(tick))
        parts.append(
            f"<line x1='{tx:.1f}' y1='{bottom}' x2='{tx:.1f}' y2='{bottom + 5}' stroke='#666'/>"
        )
        parts.append(
            f"<text x='{tx:.1f}' y='{axis}' font-size='10' text-anchor='middle'>{tick}s</text>"
        )
    legend = bottom + 44
    parts += [
        f"<circle cx='{_LEFT + 6}' cy='{legend - 4}' r='4' fill='#43a047'/>",
        f"<text x='{_LEFT + 16}' y='{legend}' font-size='11'>sync (size: ops moved)</text>",
        f"<path d='M{_LEFT + 177},{legend - 7} l6,6 m0,-6 l-6,6' stroke='#9e9e9e' "
        "stroke-width='1.5'/>",
        f"<text x='{_LEFT + 190}' y='{legend}' font-size='11'>sync failed (no network)</text>",
        f"<circle cx='{_LEFT + 366}' cy='{legend - 4}' r='6' fill='#1e88e5'/>",
        f"<text x='{_LEFT + 378}' y='{legend}' font-size='11'>back online: caught up "
        "(↑ pushed ↓ pulled)</text>",
        f"<rect x='{_LEFT + 640}' y='{legend - 11}' width='22' height='12' fill='#e53935' "
        "fill-opacity='0.18' stroke='#e53935'/>",
        f"<text x='{_LEFT + 668}' y='{legend}' font-size='11'>cable pulled</text>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
