"""Benchmark figures: one record per figure, with the baseline that ran beside it in the same run."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def print_table(figures: list[Figure]) -> None:
    rows = [("figure", "value", "unit", "baseline (same run)", "ratio")]
    for f in figures:
        baseline = "" if f.baseline is None else f"{f.baseline:,.1f} ({f.baseline_name})"
        rows.append(
            (f.name, f"{f.value:,.1f}", f.unit, baseline, "" if f.ratio is None else f"{f.ratio:.2f}")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(widths[j]) if j != 1 else cell.rjust(widths[j]) for j, cell in enumerate(row)
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def write_json(figures: list[Figure], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{**asdict(f), "ratio": f.ratio} for f in figures]
    path.write_text(
        json.dumps(
            {
                "run_at": datetime.now(UTC).isoformat(),
                "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
                "figures": records,
            },
            indent=2,
        )
        + "\n"
    )
