"""Benchmark results: a Markdown table for people, JSON for machines, a PNG when possible."""

from __future__ import annotations

import dataclasses
import datetime
import json
import statistics
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured case. ``ratio`` is ``value`` over the ``baseline`` of the same run."""

    group: str  # what the rows of one comparison share, like "4 KiB file"
    case: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    # The target as an absolute value, drawn as a line on the chart.
    target_value: float | None = None


def cost_rows(
    group: str, costs: dict[str, float], *, baseline: str, ours: str, speedup: int
) -> list[Row]:
    """Rows for per-call costs in microseconds (lower is better), each as a ratio of
    ``baseline``'s; ``ours`` must cost at most 1/``speedup`` of it."""
    base = costs[baseline]
    rows = []
    for case, value in costs.items():
        label = "(the baseline)" if case == baseline else baseline
        row = Row(group, case, value, "µs/call", label, value / base)
        if case == ours:
            row = dataclasses.replace(
                row,
                target=f"<= {1 / speedup:g}x ({speedup}x cheaper)",
                met=value * speedup <= base,
                target_value=base / speedup,
            )
        rows.append(row)
    return rows


def access_log_row(
    group: str, samples: dict[str, list[float]], *, on: str, off: str, target: float
) -> Row:
    """The gateway with its access log (``on``) over the same without (``off``), in
    requests/s: the median of the per-round ratios, which must reach ``target``."""
    pairs = zip(samples[on], samples[off], strict=True)
    ratio = statistics.median(with_log / without for with_log, without in pairs)
    print(f"  {group}: on/off = {ratio:.3f} (target >= {target})", file=sys.stderr, flush=True)
    return Row(
        group,
        on,
        statistics.median(samples[on]),
        "req/s",
        off,
        ratio,
        target=f">= {target}x (at most {1 - target:.0%} slower)",
        met=ratio >= target,
        target_value=statistics.median(samples[off]) * target,
    )


@dataclasses.dataclass
class Report:
    name: str
    title: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.met is False]


def write_report(report: Report, directory: Path = RESULTS_DIR) -> str:
    """Write ``NAME.md``, ``NAME.json`` and (with matplotlib) ``NAME.png``; return the
    Markdown, which names the chart or says why there is none."""
    directory.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    chart = _chart(report, directory / f"{report.name}.png")
    notes = [*report.notes, chart]
    markdown = _markdown(report, date, notes)
    (directory / f"{report.name}.md").write_text(markdown)
    data = {
        "benchmark": report.name,
        "title": report.title,
        "date": date,
        "rows": [dataclasses.asdict(row) for row in report.rows],
        "notes": notes,
    }
    (directory / f"{report.name}.json").write_text(json.dumps(data, indent=2) + "\n")
    return markdown


def _markdown(report: Report, date: str, notes: list[str]) -> str:
    lines = [
        f"# Benchmark `{report.name}`: {report.title}",
        "",
        f"Run {date}. Ratios divide by a baseline measured in the same run.",
        "",
        "| case | baseline | value | ratio | target | met? |",
        "|---|---|--:|--:|---|---|",
    ]
    for row in report.rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}x"
        met = {None: "—", True: "yes", False: "**no**"}[row.met]
        lines.append(
            f"| {row.group}: {row.case} | {row.baseline or '—'} | {_value(row)} | {ratio} "
            f"| {row.target or '—'} | {met} |"
        )
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def _value(row: Row) -> str:
    digits = 0 if row.value >= 100 else 1 if row.value >= 10 else 2
    return f"{row.value:,.{digits}f} {row.unit}"


def _chart(report: Report, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here; must precede pyplot
        import matplotlib.pyplot as plt
    except ImportError:
        path.unlink(missing_ok=True)  # an old chart would contradict the new table
        return "No chart: matplotlib is not installed."
    groups = list(dict.fromkeys(row.group for row in report.rows))
    heights = [len([r for r in report.rows if r.group == g]) + 1.2 for g in groups]
    figure, axes = plt.subplots(
        len(groups), 1, figsize=(9, sum(heights) * 0.55 + 0.8), height_ratios=heights
    )
    for axis, group in zip(figure.axes if len(groups) > 1 else [axes], groups, strict=True):
        rows = [row for row in report.rows if row.group == group][::-1]
        colours = [
            "#999999" if r.ratio in (None, 1.0) and not r.target else "#4477aa" for r in rows
        ]
        colours = [
            "#cc4444" if r.met is False else "#44aa66" if r.met else c
            for r, c in zip(rows, colours, strict=True)
        ]
        axis.barh([r.case for r in rows], [r.value for r in rows], color=colours)
        for index, row in enumerate(rows):
            label = f" {_value(row)}" + ("" if row.ratio is None else f" ({row.ratio:.2f}x)")
            axis.text(row.value, index, label, va="center", fontsize=8)
        for row in rows:
            if row.target_value is not None:
                axis.axvline(row.target_value, color="#cc4444", linestyle="--", linewidth=1)
        axis.set_title(f"{group} ({rows[0].unit})", fontsize=10, loc="left")
        axis.set_xlim(0, max(max(r.value, r.target_value or 0) for r in rows) * 1.45)
        axis.tick_params(labelsize=8)
    figure.suptitle(f"bench {report.name}: {report.title}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"Chart: `{path.name}` (green: target met, red: missed, dashed: target)."
