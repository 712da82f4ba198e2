"""Example jobs: real, offline, multi-step work that shows what live progress is for.

- `process_documents`: a document batch in four stages (load, validate, index, finalize).
- `search_logs`: one search per severity level over local log files.
- `count_primes`: CPU-bound work in chunks (a segmented sieve).
- `sleep_steps`: a demo that waits `delay` seconds per step; handy for trying cancellation.

File-reading jobs only read below `MCP_JOBS_DATA_DIR` (default: the bundled sample data).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from workers.errors import JobError
from workers.progress import Progress
from workers.registry import job
from workers.settings import get_settings

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


class SleepResult(BaseModel):
    steps: int
    slept_seconds: float


@job(time_limit=3600)
def sleep_steps(
    progress: Progress,
    steps: Annotated[int, Field(ge=1, le=10_000, description="How many steps to run")] = 5,
    delay: Annotated[float, Field(ge=0, le=600, description="Seconds to wait in each step")] = 1.0,
) -> SleepResult:
    """Wait `delay` seconds, `steps` times, reporting each step. A demo for progress and cancellation."""
    progress.set_total(steps, f"starting {steps} steps")
    for step in range(1, steps + 1):
        progress.sleep(delay)
        progress.report(step, f"step {step}/{steps} done")
    return SleepResult(steps=steps, slept_seconds=steps * delay)


class TermCount(BaseModel):
    term: str
    count: int


class BatchStats(BaseModel):
    documents: int = Field(description="Documents indexed")
    skipped: list[str] = Field(description="Documents rejected by validation, with the reason")
    words: int
    unique_terms: int
    top_terms: list[TermCount]
    characters: int


@job(time_limit=600)
def process_documents(
    progress: Progress,
    texts: Annotated[list[str] | None, Field(description="Documents given inline", max_length=10_000)] = None,
    folder: Annotated[str | None, Field(description="A folder below the data dir; its *.txt files")] = None,
    min_words: Annotated[int, Field(ge=0, description="Documents with fewer words are skipped")] = 1,
    top: Annotated[int, Field(ge=1, le=100)] = 10,
) -> BatchStats:
    """Index a batch of documents (inline texts and/or a folder of .txt files) and return statistics.

    Runs four steps: load, validate, index, finalize.
    """
    progress.set_total(4, "loading documents")
    documents: dict[str, str] = {f"text[{i}]": text for i, text in enumerate(texts or [])}
    if folder is not None:
        for path in sorted(_data_path(folder).glob("*.txt")):
            documents[path.name] = path.read_text(errors="replace")
    if not documents:
        raise JobError("No documents: pass `texts`, or a `folder` that holds .txt files.")
    progress.report(1, f"loaded {len(documents)} documents; validating")

    valid: dict[str, list[str]] = {}
    skipped: list[str] = []
    for name, text in documents.items():
        words = [w.lower() for w in _WORD.findall(text)]
        if len(words) < min_words:
            skipped.append(f"{name}: {len(words)} words, fewer than {min_words}")
        else:
            valid[name] = words
    progress.report(2, f"{len(valid)} valid, {len(skipped)} skipped; indexing")

    index: Counter[str] = Counter()
    for words in valid.values():
        index.update(words)
    progress.report(3, f"indexed {len(index)} terms; finalizing")

    stats = BatchStats(
        documents=len(valid),
        skipped=skipped,
        words=sum(index.values()),
        unique_terms=len(index),
        top_terms=[TermCount(term=t, count=c) for t, c in index.most_common(top)],
        characters=sum(len(documents[name]) for name in valid),
    )
    progress.report(4, "finalized")
    return stats


class LevelHits(BaseModel):
    level: str
    count: int
    lines: list[str]


class SearchResult(BaseModel):
    query: str
    files_searched: int
    levels: list[LevelHits]
    total: int


@job(time_limit=600)
def search_logs(
    progress: Progress,
    query: Annotated[str, Field(min_length=1, max_length=200, description="Text to find (case-insensitive)")],
    levels: Annotated[list[int], Field(min_length=1, max_length=10, description="Severity levels, one search each")] = [
        1,
        2,
        3,
    ],
    folder: Annotated[str, Field(description="A folder below the data dir holding *.log files")] = "logs",
    max_lines: Annotated[int, Field(ge=0, le=1000)] = 20,
) -> SearchResult:
    """Search log files for `query`, running one search per severity level (`sev=N`)."""
    files = sorted(_data_path(folder).glob("*.log"))
    if not files:
        raise JobError(f"No .log files in {folder!r}.")
    needle = query.lower()
    progress.set_total(len(levels), f"searching {len(files)} files")
    hits: list[LevelHits] = []
    for done, level in enumerate(levels, start=1):
        marker = f"sev={level} "
        lines = [
            line.strip()
            for path in files
            for line in path.read_text(errors="replace").splitlines()
            if marker in line and needle in line.lower()
        ]
        hits.append(LevelHits(level=str(level), count=len(lines), lines=lines[:max_lines]))
        progress.report(done, f"severity {level}: {len(lines)} hits")
    return SearchResult(query=query, files_searched=len(files), levels=hits, total=sum(h.count for h in hits))


class PrimeCount(BaseModel):
    limit: int
    primes: int
    largest: int | None


@job(time_limit=3600)
def count_primes(
    progress: Progress,
    limit: Annotated[int, Field(ge=2, le=200_000_000, description="Count primes below this number")],
    chunks: Annotated[int, Field(ge=1, le=10_000, description="Steps to split the work into")] = 10,
) -> PrimeCount:
    """Count the primes below `limit` with a segmented sieve, reporting after each chunk."""
    base = _small_primes(math.isqrt(limit) + 1)
    size = math.ceil(limit / chunks)
    progress.set_total(chunks, f"sieving below {limit} in {chunks} chunks")
    count, largest = 0, None
    for index in range(chunks):
        low, high = index * size, min((index + 1) * size, limit)
        found, top = _sieve_segment(low, high, base)
        count += found
        largest = top if top is not None else largest
        progress.report(index + 1, f"chunk {index + 1}/{chunks}: {count} primes so far")
    return PrimeCount(limit=limit, primes=count, largest=largest)


def _small_primes(n: int) -> list[int]:
    sieve = bytearray([1]) * max(n, 2)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(n - 1) + 1 if n > 1 else 0):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return [i for i in range(n) if sieve[i]]


def _sieve_segment(low: int, high: int, base: list[int]) -> tuple[int, int | None]:
    """Count the primes in [low, high) and return the count with the largest one."""
    if high <= low:
        return 0, None
    segment = bytearray([1]) * (high - low)
    for number in range(low, min(high, 2)):
        segment[number - low] = 0
    for p in base:
        if p * p >= high:
            break
        start = max(p * p, (low + p - 1) // p * p)
        segment[start - low :: p] = bytes(len(range(start, high, p)))
    last = segment.rfind(1)
    return segment.count(1), (low + last if last >= 0 else None)


def _data_path(folder: str) -> Path:
    """Resolve `folder` below the data dir, refusing anything that escapes it."""
    root = get_settings().data_path.resolve()
    path = (root / folder).resolve()
    if not path.is_relative_to(root):
        raise JobError(f"Folder {folder!r} is outside the data directory.")
    if not path.is_dir():
        raise JobError(f"Folder {folder!r} does not exist in the data directory.")
    return path
