"""The example jobs compute real answers (run in-process with a recording reporter)."""

from __future__ import annotations

from typing import Any

import pytest

from workers import JobError
from workers.examples import count_primes, process_documents, search_logs


class Recorder:
    """A stand-in reporter for unit tests of job logic (the real one is exercised end to end)."""

    def __init__(self) -> None:
        self.value = 0.0
        self.total: float | None = None
        self.reports: list[tuple[float, float | None, str | None]] = []

    def report(self, value: float, message: str | None = None, *, total: float | None = None) -> None:
        self.total = total if total is not None else self.total
        self.value = value
        self.reports.append((value, self.total, message))

    def set_total(self, total: float | None, message: str | None = None) -> None:
        self.total = total
        self.report(self.value, message)


def run(fn: Any, **kwargs: Any) -> tuple[Any, Recorder]:
    recorder = Recorder()
    return fn(recorder, **kwargs), recorder


def test_count_primes_matches_known_counts() -> None:
    for limit, expected, largest in [(10, 4, 7), (100, 25, 97), (1_000_000, 78_498, 999_983)]:
        result, rec = run(count_primes, limit=limit, chunks=7)
        assert (result.primes, result.largest) == (expected, largest)
        assert [r[0] for r in rec.reports] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_search_logs_runs_one_step_per_level() -> None:
    result, rec = run(search_logs, query="isr4431", levels=[1, 2, 3], folder="logs", max_lines=20)
    assert [(h.level, h.count) for h in result.levels] == [("1", 1), ("2", 2), ("3", 2)]
    assert [r[2] for r in rec.reports[1:]] == ["severity 1: 1 hits", "severity 2: 2 hits", "severity 3: 2 hits"]


def test_process_documents_reads_a_folder_and_refuses_escapes() -> None:
    result, rec = run(process_documents, texts=None, folder="docs", min_words=1, top=3)
    assert result.documents == 3 and result.words > 40
    assert [r[0] for r in rec.reports] == [0, 1, 2, 3, 4]
    with pytest.raises(JobError, match="outside"):
        run(process_documents, texts=None, folder="../../", min_words=1, top=3)
    with pytest.raises(JobError, match="No documents"):
        run(process_documents, texts=[], folder=None, min_words=1, top=3)
