"""Example jobs: real, offline, multi-step work that shows what live progress is for.

- `process_documents`: a document batch in four stages (load, validate, index, finalize).
- `search_logs`: one search per severity level over local log files.
- `log_report`: the same counts as a summary, a PNG bar chart and a CSV file (mixed content).
- `compare_documents`: two documents analysed as parallel parts, then compared.
- `progressive_search`: narrower-to-broader search strategies in turn, stopping at the first hit.
- `progressive_bug_search`: the same over log files for a bug's symptom, asking the caller before
  it broadens past the narrow strategies (a two-way job: the work before the question is kept).
- `dedupe_documents`: finds duplicate and empty documents, asks before it deletes them.
- `count_primes`: CPU-bound work in parts on any worker (a segmented sieve, fanned out).
- `sleep_steps`: a demo that waits `delay` seconds per step; handy for trying cancellation.

File-reading jobs only read regular files that resolve inside `MCP_JOBS_DATA_DIR` (default: the
bundled sample data), of at most `MAX_FILE_BYTES` each.

Not served unless asked for: `mcp-jobs dev` loads them, `serve` and `worker` with
`--jobs mcp_jobs.examples` (or `MCP_JOBS_JOB_MODULES=mcp_jobs.examples`).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mcp_jobs import content
from mcp_jobs._png import bar_chart
from mcp_jobs.errors import JobError
from mcp_jobs.progress import Progress
from mcp_jobs.registry import job
from mcp_jobs.settings import get_settings

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

    Runs four stages: load, validate, index (in parallel parts of up to 25 documents, on any
    worker), finalize.
    """
    progress.set_total(4, "loading documents")
    documents: dict[str, str] = {f"text[{i}]": text for i, text in enumerate(texts or [])}
    if folder is not None:
        for name, path in _data_files(folder, "*.txt"):
            documents[name] = _read_data_file(path)
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

    batches = [list(valid.values())[start : start + INDEX_BATCH] for start in range(0, len(valid), INDEX_BATCH)]
    index: Counter[str] = Counter()
    for counts in progress.map(index_part, batches, describe=lambda batch: f"{len(batch)} documents"):
        index.update(counts)
    finalize = 3 + len(batches)

    stats = BatchStats(
        documents=len(valid),
        skipped=skipped,
        words=sum(index.values()),
        unique_terms=len(index),
        top_terms=[TermCount(term=t, count=c) for t, c in index.most_common(top)],
        characters=sum(len(documents[name]) for name in valid),
    )
    progress.report(finalize, f"indexed {len(index)} terms; finalized", total=finalize)
    return stats


INDEX_BATCH = 25
"""Documents per indexing part of `process_documents`."""


def index_part(batch: list[list[str]]) -> dict[str, int]:
    """One part of `process_documents`: term counts over a batch of documents (their words)."""
    counts: Counter[str] = Counter()
    for words in batch:
        counts.update(words)
    return dict(counts)


class LevelHits(BaseModel):
    level: str
    count: int
    lines: list[str]


class SearchResult(BaseModel):
    query: str
    files_searched: int
    levels: list[LevelHits]
    total: int


DEFAULT_LEVELS = [1, 2, 3]
"""The severity levels searched unless told otherwise (only read, never changed)."""

LogQuery = Annotated[str, Field(min_length=1, max_length=200, description="Text to find (case-insensitive)")]
Levels = Annotated[
    list[int], Field(min_length=1, max_length=10, description="Severity levels (`sev=N`), one step each")
]
LogFolder = Annotated[str, Field(description="A folder below the data dir holding *.log files")]


def _log_files(folder: str) -> list[tuple[str, Path]]:
    files = _data_files(folder, "*.log")
    if not files:
        raise JobError(f"No .log files in {folder!r}.")
    return files


def _level_hits(texts: dict[str, list[str]], level: int, query: str) -> dict[str, list[str]]:
    """Per file, its lines of severity `level` (`sev=N`) that contain `query`, in any case."""
    marker, needle = f"sev={level} ", query.lower()
    return {
        name: [line for line in lines if marker in line and needle in line.lower()] for name, lines in texts.items()
    }


@job(time_limit=600)
def search_logs(
    progress: Progress,
    query: LogQuery,
    levels: Levels = DEFAULT_LEVELS,
    folder: LogFolder = "logs",
    max_lines: Annotated[int, Field(ge=0, le=1000)] = 20,
) -> SearchResult:
    """Search log files for `query`, running one search per severity level (`sev=N`)."""
    files = _log_files(folder)
    texts = {name: _read_data_file(path).splitlines() for name, path in files}
    progress.set_total(len(levels), f"searching {len(files)} files")
    hits: list[LevelHits] = []
    for done, level in enumerate(levels, start=1):
        lines = [line.strip() for found in _level_hits(texts, level, query).values() for line in found]
        hits.append(LevelHits(level=str(level), count=len(lines), lines=lines[:max_lines]))
        progress.report(done, f"severity {level}: {len(lines)} hits")
    return SearchResult(query=query, files_searched=len(files), levels=hits, total=sum(h.count for h in hits))


@job(time_limit=600)
def log_report(
    progress: Progress,
    query: LogQuery,
    levels: Levels = DEFAULT_LEVELS,
    folder: LogFolder = "logs",
) -> list[content.TextContent | content.Image | content.EmbeddedResource]:
    """Report how often `query` occurs per severity level: a summary, a PNG bar chart and a CSV file.

    An example of results beyond JSON (mixed content: text, an image and an embedded file).
    """
    files = _log_files(folder)
    progress.set_total(len(levels) + 1, f"counting in {len(files)} files")
    texts = {name: _read_data_file(path).lower().splitlines() for name, path in files}  # counted, not shown
    rows = ["level,file,count"]
    totals = []
    for done, level in enumerate(levels, start=1):
        counts = {name: len(found) for name, found in _level_hits(texts, level, query).items()}
        rows += [f"{level},{name},{count}" for name, count in counts.items()]
        totals.append(sum(counts.values()))
        progress.report(done, f"severity {level}: {totals[-1]} hits")
    chart = bar_chart(totals)
    progress.report(len(levels) + 1, "rendered the chart")
    summary = ", ".join(f"severity {level}: {total}" for level, total in zip(levels, totals))
    return [
        content.text(f"{query!r} in {len(files)} files: {summary}."),
        content.Image(data=chart, format="png"),
        content.embedded_file(f"report://{folder}/{query}.csv", "\n".join(rows) + "\n", "text/csv"),
    ]


class SideStats(BaseModel):
    document: str
    words: int
    unique_terms: int
    top_terms: list[TermCount]


class Comparison(BaseModel):
    left: SideStats
    right: SideStats
    shared_terms: int
    similarity: float = Field(description="Jaccard similarity of the two vocabularies (0-1)")
    only_left: list[str]
    only_right: list[str]


@job(time_limit=600)
def compare_documents(
    progress: Progress,
    left: Annotated[str, Field(description="A .txt file of the folder")],
    right: Annotated[str, Field(description="Another .txt file of the folder")],
    folder: Annotated[str, Field(description="A folder below the data dir")] = "docs",
    top: Annotated[int, Field(ge=1, le=50)] = 5,
) -> Comparison:
    """Compare two documents: each side is analysed as its own part, in parallel on any worker, and
    reported as it finishes; then their vocabularies are compared."""
    files = dict(_data_files(folder, "*.txt"))
    missing = [name for name in (left, right) if name not in files]
    if missing:
        raise JobError(
            f"No {', '.join(missing)} in {folder!r}; it holds {', '.join(sorted(files)) or 'no .txt files'}."
        )
    sides = [{"document": name, "text": _read_data_file(files[name])} for name in (left, right)]
    analysed = progress.map(side_part, sides, describe=lambda side: f"{side['document']} analysed")
    terms = [set(side["counts"]) for side in analysed]
    shared, union = terms[0] & terms[1], terms[0] | terms[1]

    def stats(side: dict[str, Any]) -> SideStats:
        counts = Counter(side["counts"])
        return SideStats(
            document=side["document"],
            words=sum(counts.values()),
            unique_terms=len(counts),
            top_terms=[TermCount(term=t, count=c) for t, c in counts.most_common(top)],
        )

    return Comparison(
        left=stats(analysed[0]),
        right=stats(analysed[1]),
        shared_terms=len(shared),
        similarity=round(len(shared) / len(union), 4) if union else 1.0,
        only_left=sorted(terms[0] - terms[1])[:top],
        only_right=sorted(terms[1] - terms[0])[:top],
    )


def side_part(side: dict[str, str]) -> dict[str, Any]:
    """One side of `compare_documents`: its term counts."""
    return {"document": side["document"], "counts": dict(Counter(w.lower() for w in _WORD.findall(side["text"])))}


class Attempt(BaseModel):
    strategy: str
    matches: int


class Match(BaseModel):
    document: str
    line: str


class SearchOutcome(BaseModel):
    query: str
    strategy: str | None = Field(description="The first strategy that found something (None: none did)")
    attempts: list[Attempt]
    matches: list[Match]


STRATEGIES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("exact phrase", lambda query, line: query in line),
    ("phrase, any case", lambda query, line: query.lower() in line.lower()),
    ("all words", lambda query, line: all(w in line.lower() for w in query.lower().split())),
    ("any word", lambda query, line: any(w in line.lower() for w in query.lower().split())),
    ("word stems", lambda query, line: any(w[:4] in line.lower() for w in query.lower().split() if len(w) >= 4)),
]
"""Narrowest first: `progressive_search` stops at the first that finds something."""


@job(time_limit=600)
def progressive_search(
    progress: Progress,
    query: Annotated[str, Field(min_length=1, max_length=200, description="What to look for")],
    folder: Annotated[str, Field(description="A folder below the data dir holding *.txt files")] = "docs",
    max_matches: Annotated[int, Field(ge=1, le=200)] = 20,
) -> SearchOutcome:
    """Search documents with ever broader strategies (exact phrase, any case, all words, any word,
    word stems), reporting each attempt, and stop at the first that finds something."""
    return _search_lines(progress, query, _lines(folder, "*.txt"), max_matches, "lines")


def _lines(folder: str, pattern: str) -> list[tuple[str, str]]:
    """The non-blank lines of the data files matching `pattern` in `folder`, with their file names."""
    return [
        (name, line.strip())
        for name, path in _data_files(folder, pattern)
        for line in _read_data_file(path).splitlines()
        if line.strip()
    ]


def _search_lines(
    progress: Progress,
    query: str,
    lines: list[tuple[str, str]],
    max_matches: int,
    what: str,
    may_go_on: Callable[[int, list[Attempt]], bool] = lambda step, attempts: True,
) -> SearchOutcome:
    """Try `STRATEGIES` in turn, reporting each, until one finds something, or `may_go_on` (asked
    before each strategy with its number and the attempts so far) says to stop."""
    progress.set_total(len(STRATEGIES), f"searching {len(lines)} {what}")
    attempts: list[Attempt] = []
    for step, (strategy, matches) in enumerate(STRATEGIES, start=1):
        if not may_go_on(step, attempts):
            break
        found = [Match(document=name, line=line) for name, line in lines if matches(query, line)]
        attempts.append(Attempt(strategy=strategy, matches=len(found)))
        if found:
            progress.report(len(STRATEGIES), f"{strategy}: {len(found)} matches; done")
            return SearchOutcome(query=query, strategy=strategy, attempts=attempts, matches=found[:max_matches])
        progress.report(step, f"{strategy}: no matches; broadening")
    return SearchOutcome(query=query, strategy=None, attempts=attempts, matches=[])


class Broaden(BaseModel):
    broaden: bool = Field(description="Search with looser strategies (any word, word stems)?")


NARROW = 3
"""How many of `STRATEGIES` `progressive_bug_search` tries before it asks to broaden."""


@job(time_limit=1800)
def progressive_bug_search(
    progress: Progress,
    symptom: Annotated[str, Field(min_length=1, max_length=200, description="An error message or symptom")],
    folder: Annotated[str, Field(description="A folder below the data dir holding *.log files")] = "logs",
    max_matches: Annotated[int, Field(ge=1, le=200)] = 20,
) -> SearchOutcome:
    """Hunt for a bug's symptom in log files with ever broader strategies, reporting each attempt.
    Before the loose strategies (any word, word stems), which can match a lot of noise, it asks
    whether to broaden; a client that cannot answer gets the narrow results only."""

    def may_go_on(step: int, attempts: list[Attempt]) -> bool:
        if step != NARROW + 1:
            return True
        tried = ", ".join(attempt.strategy for attempt in attempts)
        if not progress.supports("elicitation"):
            progress.report(len(STRATEGIES), f"no matches with {tried}; not broadening without asking")
            return False
        question = f"No log line matches {symptom!r} with {tried}. Broaden to looser strategies?"
        if not progress.ask(question, Broaden).broaden:
            progress.report(len(STRATEGIES), "not broadened, as asked")
            return False
        return True

    return _search_lines(progress, symptom, _lines(folder, "*.log"), max_matches, "log lines", may_go_on)


class Deletion(BaseModel):
    delete: bool = Field(description="Delete the files listed?")


class Dedupe(BaseModel):
    scanned: int
    duplicates: list[str]
    empty: list[str]
    deleted: list[str]


@job(time_limit=1800)
def dedupe_documents(
    progress: Progress,
    folder: Annotated[str, Field(description="A folder below the data dir holding *.txt files")] = "docs",
) -> Dedupe:
    """Find documents that repeat another one word for word, or hold no words, and delete them,
    after asking: nothing is deleted without a yes from the caller's user."""
    files = _data_files(folder, "*.txt")
    progress.set_total(3, f"reading {len(files)} documents")
    seen: dict[tuple[str, ...], str] = {}
    duplicates, empty = [], []
    for name, path in files:
        words = tuple(word.lower() for word in _WORD.findall(_read_data_file(path)))
        if not words:
            empty.append(name)
        elif words in seen:
            duplicates.append(name)
        else:
            seen[words] = name
    doomed = duplicates + empty
    progress.report(1, f"{len(duplicates)} duplicates, {len(empty)} empty")
    if not doomed:
        progress.report(3, "nothing to delete")
        return Dedupe(scanned=len(files), duplicates=[], empty=[], deleted=[])
    listed = ", ".join(doomed[:20]) + (f" and {len(doomed) - 20} more" if len(doomed) > 20 else "")
    if not progress.ask(f"Delete {len(doomed)} documents from {folder}: {listed}?", Deletion).delete:
        progress.report(3, "kept everything, as asked")
        return Dedupe(scanned=len(files), duplicates=duplicates, empty=empty, deleted=[])
    progress.report(2, f"deleting {len(doomed)} documents")
    paths = dict(files)
    for name in doomed:
        paths[name].unlink(missing_ok=True)
    progress.report(3, f"deleted {len(doomed)} documents")
    return Dedupe(scanned=len(files), duplicates=duplicates, empty=empty, deleted=doomed)


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
    """Count the primes below `limit` with a segmented sieve, split into `chunks` parts that run in
    parallel on any worker (fan-out), reporting as each part finishes."""
    size = math.ceil(limit / chunks)
    segments = [[index * size, min((index + 1) * size, limit)] for index in range(chunks)]
    found = progress.map(sieve_part, segments, describe=lambda bounds: f"{bounds[0]:,}-{bounds[1]:,}")
    largest = max((top for _, top in found if top is not None), default=None)
    return PrimeCount(limit=limit, primes=sum(count for count, _ in found), largest=largest)


def sieve_part(bounds: list[int]) -> tuple[int, int | None]:
    """One part of `count_primes`: the primes in [low, high) (count, largest)."""
    low, high = bounds
    return _sieve_segment(low, high, _small_primes(math.isqrt(max(high - 1, 1)) + 1))


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


MAX_FILE_BYTES = 20_000_000
"""Largest data file the file-reading examples read."""


def _data_path(folder: str) -> Path:
    """Resolve `folder` below the data dir, refusing anything that escapes it."""
    root = get_settings().data_path.resolve()
    path = (root / folder).resolve()
    if not path.is_relative_to(root):
        raise JobError(f"Folder {folder!r} is outside the data directory.")
    if not path.is_dir():
        raise JobError(f"Folder {folder!r} does not exist in the data directory.")
    return path


def _data_files(folder: str, pattern: str) -> list[tuple[str, Path]]:
    """The files matching `pattern` in `folder` as (name, resolved path), symlinks followed; a
    file that resolves outside the data directory is refused."""
    root = get_settings().data_path.resolve()
    files = []
    for path in sorted(_data_path(folder).glob(pattern)):
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise JobError(f"{folder}/{path.name} points outside the data directory; refusing to read it.")
        files.append((path.name, resolved))
    return files


def _read_data_file(path: Path) -> str:
    """The text of a regular file of at most `MAX_FILE_BYTES`.

    Opened without following a symlink and without blocking, then checked on the open descriptor,
    so a FIFO or device named `*.txt` (or a file swapped for one after `_data_files` looked) is
    refused instead of blocking or exhausting the worker.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        raise JobError(f"Cannot open {path.name}: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise JobError(f"{path.name} is not a regular file; refusing to read it.")
        if info.st_size > MAX_FILE_BYTES:
            raise JobError(f"{path.name} is {info.st_size} bytes, over the {MAX_FILE_BYTES}-byte limit for one file.")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise JobError(f"{path.name} grew past the {MAX_FILE_BYTES}-byte limit while being read.")
    return data.decode(errors="replace")
