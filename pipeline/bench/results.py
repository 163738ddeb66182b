"""What a benchmark run produced: figures grouped in sections, the machine, and how to (re)read them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Section names in the order they run and are reported; ``--only`` takes these.
SECTIONS = ("load", "memory", "parallel", "sensor", "events", "stream", "refusals")
SECTION_TITLES = {
    "load": "Bulk load: S3 CSV into a table with a text primary key",
    "memory": "Peak memory (RSS) of `pipeline run` against object size",
    "parallel": "Parallel objects: 8 objects, exec.max_threads 1, 2 and 4",
    "sensor": "S3 sensor tick: 10 new objects after N existing ones",
    "events": "Event-driven S3: PutObject to visible in the table, with the bucket's notifications and without",
    "stream": "Kinesis: backlog throughput and end-to-end latency",
    "refusals": "One refused record: a batch with one bad record against the same batch clean",
}


@dataclass
class Figure:
    """One measured number, next to what it is compared with."""

    key: str  # stable identifier, e.g. "load.1m.ours_plain"
    label: str  # what was measured, in words
    value: float
    unit: str  # "rows/s", "s", "MB", "records/s", "x"
    ratio: float | None = None  # reads "<ratio>× <ratio_meaning> <compared_with>"
    ratio_meaning: str | None = None  # e.g. "the floor's rows/s:", "as fast as"
    compared_with: str | None = None  # the reference and its own figure, e.g. "psql \\copy, 122,598 rows/s"
    target: str | None = None  # the goal, in words ("< 0.1 s")
    meets: bool | None = None  # whether this run met the target (machines are noisy: informative only)
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"{self.key}: a figure must be a finite number, got {self.value}")


@dataclass
class Section:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the section failed part-way: what went wrong

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)


@dataclass
class Results:
    machine: dict[str, Any]
    options: dict[str, Any]
    started: str  # ISO 8601, UTC
    sections: dict[str, Section] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [f for section in self.sections.values() for f in section.figures]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Results:
        data = json.loads(path.read_text(encoding="utf-8"))
        sections = {
            name: Section(**{**raw, "figures": [Figure(**f) for f in raw.get("figures", [])]})
            for name, raw in data.get("sections", {}).items()
        }
        return cls(machine=data["machine"], options=data["options"], started=data["started"], sections=sections,
                   seconds=data.get("seconds", 0.0), notes=data.get("notes", []))


def best(samples: list[float]) -> float:
    """The fastest of repeated timings: the least disturbed by whatever else the machine was doing."""
    return min(samples)


def median(samples: list[float]) -> float:
    ordered = sorted(samples)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.95 for p95)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def timings(samples: list[float]) -> dict[str, Any]:
    """The detail every repeated timing carries: best, median and each run, in seconds."""
    return {"seconds_best": round(best(samples), 4), "seconds_median": round(median(samples), 4),
            "seconds_runs": [round(s, 4) for s in samples]}
