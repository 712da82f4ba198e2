"""The example jobs compute real answers, run in-process with the public `RecordingProgress`
test double, and read only regular files inside the data directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_jobs import JobCancelled, JobError, RecordingProgress, get_settings
from mcp_jobs.examples import (
    compare_documents,
    count_primes,
    process_documents,
    progressive_search,
    search_logs,
    sleep_steps,
)

SAMPLE_DATA = Path(get_settings().data_path)


def test_count_primes_matches_known_counts() -> None:
    for limit, expected, largest in [(10, 4, 7), (100, 25, 97), (1_000_000, 78_498, 999_983)]:
        progress = RecordingProgress()
        result = count_primes(progress, limit=limit, chunks=7)
        assert (result.primes, result.largest) == (expected, largest)
        assert [u.progress for u in progress.updates] == [0, 1, 2, 3, 4, 5, 6, 7]
        assert {u.total for u in progress.updates} == {7}


def test_search_logs_runs_one_step_per_level() -> None:
    progress = RecordingProgress()
    result = search_logs(progress, query="isr4431", levels=[1, 2, 3], folder="logs", max_lines=20)
    assert [(h.level, h.count) for h in result.levels] == [("1", 1), ("2", 2), ("3", 2)]
    assert [u.message for u in progress.updates[1:]] == [
        "severity 1: 1 hits",
        "severity 2: 2 hits",
        "severity 3: 2 hits",
    ]


def test_process_documents_reads_a_folder_and_refuses_escapes() -> None:
    progress = RecordingProgress()
    result = process_documents(progress, texts=None, folder="docs", min_words=1, top=3)
    assert result.documents == 3 and result.words > 40
    assert [u.progress for u in progress.updates] == [0, 1, 2, 2, 3, 4]  # 2 twice: the parts' total is announced
    assert progress.updates[4].message == "part 1/1 done: 3 documents"
    with pytest.raises(JobError, match="outside"):
        process_documents(RecordingProgress(), texts=None, folder="../../", min_words=1, top=3)
    with pytest.raises(JobError, match="No documents"):
        process_documents(RecordingProgress(), texts=[], folder=None, min_words=1, top=3)


def test_the_recording_double_skips_sleeps_and_plays_the_caller_cancelling() -> None:
    progress = RecordingProgress()
    assert sleep_steps(progress, steps=3, delay=60).steps == 3
    assert progress.slept == 180, "sleeps are added up, not slept"
    assert [u.message for u in progress.updates][-1] == "step 3/3 done"
    cancelled = RecordingProgress(cancel_after=2)
    with pytest.raises(JobCancelled):
        sleep_steps(cancelled, steps=10, delay=1)
    assert len(cancelled.updates) == 2


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory of our own (a copy of the sample data), with a secret file beside it."""
    root = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, root)
    (tmp_path / "secret.txt").write_text("the password is hunter2")
    monkeypatch.setenv("MCP_JOBS_DATA_DIR", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def test_a_symlinked_file_pointing_outside_is_refused(data_dir: Path) -> None:
    (data_dir / "docs" / "leak.txt").symlink_to(data_dir.parent / "secret.txt")
    (data_dir / "logs" / "leak.log").symlink_to(data_dir.parent / "secret.txt")
    with pytest.raises(JobError, match=r"leak\.txt points outside the data directory"):
        process_documents(RecordingProgress(), folder="docs")
    with pytest.raises(JobError, match=r"leak\.log points outside the data directory"):
        search_logs(RecordingProgress(), query="hunter2", folder="logs")


def test_a_symlink_that_stays_inside_is_read(data_dir: Path) -> None:
    (data_dir / "docs" / "again.txt").symlink_to(data_dir / "docs" / "redis.txt")
    assert process_documents(RecordingProgress(), folder="docs").documents == 4


def test_a_fifo_named_like_a_document_is_refused_without_blocking(data_dir: Path) -> None:
    os.mkfifo(data_dir / "docs" / "pipe.txt")  # opening it for reading would block forever
    with pytest.raises(JobError, match=r"pipe\.txt is not a regular file"):
        process_documents(RecordingProgress(), folder="docs")


def test_files_over_the_size_cap_are_refused(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mcp_jobs.examples.MAX_FILE_BYTES", 100)
    with pytest.raises(JobError, match=r"over the 100-byte limit"):
        process_documents(RecordingProgress(), folder="docs")


def test_compare_documents_analyses_each_side_as_a_part() -> None:
    progress = RecordingProgress()
    result = compare_documents(progress, "redis.txt", "celery.txt")
    assert (result.left.document, result.right.document) == ("redis.txt", "celery.txt")
    assert 0 < result.similarity < 1 and result.shared_terms > 0
    done = [u.message for u in progress.updates if u.message and " done: " in u.message]
    assert done == ["part 1/2 done: redis.txt analysed", "part 2/2 done: celery.txt analysed"]
    with pytest.raises(JobError, match=r"No nothere\.txt"):
        compare_documents(RecordingProgress(), "redis.txt", "nothere.txt")


def test_progressive_search_broadens_until_something_matches() -> None:
    progress = RecordingProgress()
    result = progressive_search(progress, "Pub Sub messages")
    assert result.strategy == "all words" and [a.matches for a in result.attempts] == [0, 0, 1]
    assert [u.message for u in progress.updates][1:] == [
        "exact phrase: no matches; broadening",
        "phrase, any case: no matches; broadening",
        "all words: 1 matches; done",
    ]
    nothing = progressive_search(RecordingProgress(), "zzzzqqq")
    assert nothing.strategy is None and len(nothing.attempts) == 5 and nothing.matches == []


def test_progressive_bug_search_asks_before_it_broadens_and_keeps_what_it_tried() -> None:
    from mcp_jobs.examples import NARROW, progressive_bug_search

    symptom = "qzx flux capacitor overheated"  # matches nothing, however broad
    asked: list[str] = []

    def say_no(key: str, request: dict[str, object]) -> object:
        asked.append(str(request["params"]["message"]))  # type: ignore[index]
        return {"action": "accept", "content": {"broaden": False}}

    progress = RecordingProgress(answer=say_no)
    outcome = progressive_bug_search(progress, symptom)
    assert outcome.strategy is None and len(outcome.attempts) == NARROW
    assert len(asked) == 1 and "Broaden" in asked[0]
    assert progress.updates[-1].message == "not broadened, as asked"
    # Answering yes goes on with the loose strategies; a client that cannot answer is not asked.
    yes = RecordingProgress(answer=lambda key, request: {"action": "accept", "content": {"broaden": True}})
    assert len(progressive_bug_search(yes, symptom).attempts) > NARROW
    mute = RecordingProgress(can_ask=frozenset())
    assert len(progressive_bug_search(mute, symptom).attempts) == NARROW and not mute.questions


def test_dedupe_documents_deletes_only_after_a_yes(data_dir: Path) -> None:
    from mcp_jobs.examples import dedupe_documents

    folder = data_dir / "dupes"
    folder.mkdir()
    (folder / "a.txt").write_text("The same words here.")
    (folder / "b.txt").write_text("the SAME words, here!")
    (folder / "c.txt").write_text("...")
    (folder / "d.txt").write_text("Something else entirely.")
    no = RecordingProgress(answer=lambda key, request: {"action": "accept", "content": {"delete": False}})
    kept = dedupe_documents(no, "dupes")
    assert (kept.duplicates, kept.empty, kept.deleted) == (["b.txt"], ["c.txt"], [])
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    yes = RecordingProgress(answer=lambda key, request: {"action": "accept", "content": {"delete": True}})
    assert dedupe_documents(yes, "dupes").deleted == ["b.txt", "c.txt"]
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "d.txt"]
    with pytest.raises(JobError, match="declined"):
        (folder / "e.txt").write_text("")
        dedupe_documents(RecordingProgress(), "dupes")
