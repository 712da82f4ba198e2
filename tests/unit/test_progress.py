"""What a job may pass to `Progress`: checked in the job, before anything leaves the worker.

Run against the public `RecordingProgress`, which shares the checks with the real reporter (the
end-to-end side is in `test_hardening.py`).
"""

from __future__ import annotations

from typing import Any

import pytest

from mcp_jobs import RecordingProgress


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (float("nan"), ValueError, "finite"),
        (float("inf"), ValueError, "finite"),
        (float("-inf"), ValueError, "finite"),
        (10**400, ValueError, "too large"),
        ("abc", TypeError, "number, not str"),
        (True, TypeError, "number, not bool"),
        (b"1", TypeError, "number, not bytes"),
    ],
)
def test_values_must_be_finite_numbers(value: Any, error: type[Exception], match: str) -> None:
    progress = RecordingProgress()
    with pytest.raises(error, match=match):
        progress.report(value)
    with pytest.raises(error, match=match):
        progress.report(1, total=value)
    with pytest.raises(error, match=match):
        progress.advance(value)
    assert progress.updates == [], "nothing is sent for a bad report"


def test_messages_must_be_strings_within_the_limit() -> None:
    progress = RecordingProgress(max_message_chars=10)
    bad: Any = 12345
    with pytest.raises(TypeError, match="str or None, not int"):
        progress.report(1, bad)
    with pytest.raises(ValueError, match="11 characters is over the limit of 10"):
        progress.report(1, "x" * 11)
    progress.report(1, "x" * 10)
    assert [(u.progress, u.message) for u in progress.updates] == [(1, "x" * 10)]


def test_good_reports_keep_value_and_total() -> None:
    progress = RecordingProgress()
    progress.set_total(4, "go")
    progress.advance()
    progress.advance(2, "three")
    progress.report(3.5)
    assert [(u.progress, u.total, u.message) for u in progress.updates] == [
        (0, 4, "go"),
        (1, 4, None),
        (3, 4, "three"),
        (3.5, 4, None),
    ]


# Two-way jobs under RecordingProgress: what a job author's unit test sees.


def test_a_job_asks_and_logs_under_a_recording_progress() -> None:
    from pydantic import BaseModel

    from mcp_jobs.asking import CannotAsk, QuestionDeclined

    class Go(BaseModel):
        ok: bool

    def careful(progress: RecordingProgress) -> str:
        progress.info("looking")
        if not progress.ask("Go on?", Go).ok:
            return "stopped"
        return str(progress.sample("Say hi", max_tokens=5).content.text)  # type: ignore[union-attr]

    def client(key: str, request: dict[str, object]) -> object:
        if request["method"] == "elicitation/create":
            return {"action": "accept", "content": {"ok": True}}
        return {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}

    progress = RecordingProgress(answer=client)
    assert careful(progress) == "hi"
    assert [list(round_) for round_ in progress.questions] == [["ask-1"], ["sample-2"]]
    assert progress.logs == [{"level": "info", "data": "looking", "logger": None}]
    with pytest.raises(QuestionDeclined):
        careful(RecordingProgress())
    with pytest.raises(CannotAsk, match="cannot answer elicitation"):
        careful(RecordingProgress(can_ask=frozenset({"sampling"})))
    with pytest.raises(ValueError, match="log level"):
        progress.log("loud", "x")


def test_an_async_job_asks_without_blocking_its_event_loop() -> None:
    import asyncio

    from pydantic import BaseModel

    class Name(BaseModel):
        name: str

    async def greet(progress: RecordingProgress) -> str:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        answer = await progress.ask_async("Name?", Name)
        ticker.cancel()
        return f"{answer.name} ({ticks > 0})"

    def slow_client(key: str, request: dict[str, object]) -> object:
        import time

        time.sleep(0.05)  # the user typing: the job's event loop goes on meanwhile
        return {"action": "accept", "content": {"name": "Ada"}}

    assert asyncio.run(greet(RecordingProgress(answer=slow_client))) == "Ada (True)"


def test_an_artifact_is_checked_before_anything_is_stored() -> None:
    progress = RecordingProgress()
    progress.max_artifact_bytes = 10
    link = progress.artifact("report.csv", "a,b\n")
    assert (link.name, link.mime_type, link.size) == ("report.csv", "text/csv", 4)
    assert str(link.uri) == "mcp-jobs://jobs/test-job/artifacts/report.csv"
    with pytest.raises(ValueError, match="over the 10-byte limit"):
        progress.artifact("big.bin", b"x" * 11)
    for name in ("../etc/passwd", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="artifact name"):
            progress.artifact(name, b"x")
    with pytest.raises(TypeError, match="bytes or str"):
        progress.artifact("n.bin", 3)  # type: ignore[arg-type]
    assert list(progress.files) == ["report.csv"]
