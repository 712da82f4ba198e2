"""`Progress`: the reporter a job receives to tell its caller how far it got.

Each report is one Redis round trip that updates the job's snapshot, publishes the event and
reads the cancellation flag (see `_store.py`); a report after the caller cancelled raises
`JobCancelled` inside the job. Reports are best effort: while Redis is unreachable they are
skipped (the job keeps working, and the next report or the outcome brings the snapshot up to
date). The server decides what reaches the client: strictly increasing values, at a bounded rate.

What a job passes is checked before anything leaves the worker: values and totals must be finite
real numbers and messages strings of at most `max_message_chars` characters. A job that passes
anything else has a bug, so the report raises (`TypeError` or `ValueError`) inside the job, which
then fails with that error instead of sending the caller something its client would reject.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from mcp_jobs._events import LOG_LEVELS, JobState
from mcp_jobs.artifacts import ArtifactInfo, as_bytes, check_name, guess_type
from mcp_jobs.artifacts import store as store_artifact
from mcp_jobs.asking import (
    DEFAULT_INPUT_TIMEOUT,
    CannotAsk,
    Elicit,
    ListRoots,
    Question,
    Sample,
    check_key,
    wait_for_answers,
)
from mcp_jobs.errors import JobCancelled, JobEnded
from mcp_jobs.redis_connect import REDIS_ERRORS

if TYPE_CHECKING:
    from mcp.types import CreateMessageResult, ResourceLink, Root, SamplingMessage

    from mcp_jobs._store import JobStore
    from mcp_jobs.fanout import PartsContext
    from mcp_jobs.tracing import JobTrace

M = TypeVar("M", bound=BaseModel)

logger = logging.getLogger(__name__)

STARTED = "started"
"""The message of a run's start write, which begins its first step (see `_timeline.py`)."""

CANCEL_POLL_INTERVAL = 0.1
"""Seconds between cancellation checks while a job waits in `Progress.sleep`."""

DEFAULT_MAX_MESSAGE_CHARS = 1000
"""Longest progress message a job may send, unless the settings say otherwise."""

DEFAULT_MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
"""Largest artifact a job may store, unless the settings say otherwise."""


class Progress:
    """Report steps, totals and messages from inside a job, and notice cancellation.

    ```python
    @job
    def crunch(progress: Progress, items: list[str]) -> int:
        progress.set_total(len(items))
        for item in items:
            handle(item)
            progress.advance(message=f"handled {item}")
        return len(items)
    ```
    """

    def __init__(
        self,
        store: JobStore | None,
        job_id: str,
        attempt: int = 1,
        max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS,
        parts: PartsContext | None = None,
        input_timeout: float = DEFAULT_INPUT_TIMEOUT,
        max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    ) -> None:
        self._store = store
        self.artifacts: list[str] = []
        """The names of the files this run stored (`artifact`)."""
        self.max_artifact_bytes = max_artifact_bytes
        """Largest file `artifact` stores (`MCP_JOBS_MAX_ARTIFACT_BYTES`)."""
        self._round: int | None = None
        self._message: str | None = None
        self._step: str | None = STARTED
        """The message of the step the run is in (the run's start write began the first)."""
        self.trace: JobTrace | None = None
        """This run's spans, when tracing is on (`mcp_jobs.tracing`)."""
        self.input_timeout = input_timeout
        """Seconds `ask` and its kin wait for an answer (`MCP_JOBS_INPUT_TIMEOUT`)."""
        self._parts = parts
        self._maps = 0
        self.job_id = job_id
        self.attempt = attempt
        """1 on the first run; 2 and up when the job is re-run after its worker was lost."""
        self.max_message_chars = max_message_chars
        """Longest message `report` accepts (`MCP_JOBS_MAX_MESSAGE_CHARS`)."""
        self.value: float = 0.0
        """The last reported progress value."""
        self.total: float | None = None
        """The total reported with each update (None: unknown)."""

    def report(self, value: float, message: str | None = None, *, total: float | None = None) -> None:
        """Set the progress to `value` (and optionally a new total) with a message for the caller.

        Raises `TypeError` or `ValueError` for a value or total that is not a finite number, or a
        message that is not a string or is longer than `max_message_chars`; `JobCancelled` once
        the caller cancelled; `JobEnded` once the job was ended some other way (see `JobEnded`).
        """
        value = finite_number("progress", value)
        if total is not None:
            self.total = finite_number("total", total)
        message = self._checked_message(message)
        self.value = value
        self._message = message
        self._publish(value, self.total, message)

    def advance(self, amount: float = 1, message: str | None = None) -> None:
        """Move the progress forward by `amount` (one step by default)."""
        self.report(self.value + finite_number("amount", amount), message)

    def set_total(self, total: float | None, message: str | None = None) -> None:
        """Announce how many steps there are (None: unknown) and report the current value with it."""
        self.total = None if total is None else finite_number("total", total)
        self.report(self.value, message)

    @property
    def cancelled(self) -> bool:
        """Whether the caller cancelled this job (one Redis read; False while Redis is unreachable)."""
        try:
            return self._require_store().cancel_requested(self.job_id)
        except REDIS_ERRORS:
            return False

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if the caller cancelled; call it in long loops that do not report."""
        if self.cancelled:
            raise JobCancelled(self.job_id)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up and raise `JobCancelled` within about 0.1 s of a cancellation."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_cancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, CANCEL_POLL_INTERVAL))

    def artifact(self, name: str, data: bytes | str, mime_type: str | None = None) -> ResourceLink:
        """Store a file the job made (`bytes`, or `str` as UTF-8) with its result, and return the
        `resource_link` block that names it (`mcp-jobs://jobs/<id>/artifacts/<name>`): put it in
        the job's content, and the caller reads the file when it wants (`resources/read`),
        instead of the model getting it inline. `mime_type` is guessed from the name if not
        given. Storing the same name again replaces the file. Raises `ValueError` for a bad
        name or a file over `max_artifact_bytes`; see `mcp_jobs.artifacts`."""
        check_name(name)
        payload = as_bytes(data)
        if len(payload) > self.max_artifact_bytes:
            raise ValueError(
                f"artifact {name} is {len(payload)} bytes, over the {self.max_artifact_bytes}-byte limit "
                "(MCP_JOBS_MAX_ARTIFACT_BYTES)"
            )
        info = self._store_artifact(name, payload, mime_type or guess_type(name, data))
        if name not in self.artifacts:
            self.artifacts.append(name)
        return info.link(self.job_id)

    def _store_artifact(self, name: str, data: bytes, mime_type: str) -> ArtifactInfo:
        store = self._require_store()
        return store_artifact(store.client, store.keys, self.job_id, name, data, mime_type, store.ttl)

    # Two-way jobs: questions for the caller, and log lines (see `mcp_jobs.asking`).

    def ask(self, message: str, schema: type[M], *, key: str | None = None) -> M:
        """Ask the user `message` and return the answer as `schema` (a pydantic model of flat
        fields: str, int, float, bool, enums), waiting for it while the job stays parked.

        Raises `QuestionDeclined` or `QuestionCancelled` when the user declines or dismisses it,
        `CannotAsk` when the caller's client cannot answer questions, `NoAnswer` after the input
        timeout, `JobCancelled` when the caller cancels meanwhile. All but the last are
        `JobError`s: uncaught, the call ends with their message as a tool error.
        """
        key = key or self._default_key("ask")
        answer: M = self.ask_all({key: Elicit(message, schema)})[key]
        return answer

    def sample(
        self,
        messages: str | Sequence[SamplingMessage],
        *,
        max_tokens: int = 1000,
        system_prompt: str | None = None,
        temperature: float | None = None,
        key: str | None = None,
    ) -> CreateMessageResult:
        """Ask the caller's model for a reply (`sampling/createMessage`) and return it: the SDK's
        `CreateMessageResult`, whose `content` holds the reply. Raises as `ask` does."""
        key = key or self._default_key("sample")
        question = Sample(messages, max_tokens, system_prompt, temperature)
        reply: CreateMessageResult = self.ask_all({key: question})[key]
        return reply

    def roots(self, *, key: str | None = None) -> list[Root]:
        """The caller's roots (`roots/list`): the folders or files its client lets this server see."""
        key = key or self._default_key("roots")
        roots: list[Root] = self.ask_all({key: ListRoots()})[key]
        return roots

    def ask_all(self, questions: Mapping[str, Question]) -> dict[str, Any]:
        """Ask several questions at once (`Elicit`, `Sample`, `ListRoots` from `mcp_jobs.asking`,
        by key), as one round, and return the answers by key. Keys are the job's own (letters,
        digits, `_.-`); use new ones for each round of a task. Raises as `ask` does."""
        if not questions:
            raise ValueError("ask_all needs at least one question")
        for key in questions:
            check_key(key)
        self.check_cancelled()
        can = self._can_ask()
        missing = sorted({q.capability for q in questions.values()} - can)
        if missing:
            raise CannotAsk(
                f"The caller's client cannot answer {' or '.join(missing)} requests (it did not declare "
                "the capability), so the job could not ask its question."
            )
        requests = {key: question.request() for key, question in questions.items()}
        return self._ask_round(requests, questions)

    def supports(self, capability: str) -> bool:
        """Whether the caller's client can answer `capability` requests: "elicitation",
        "sampling" or "roots" (what it declared, on this call's request or its session)."""
        return capability in self._can_ask()

    def log(self, level: str, message: str, *, logger: str | None = None) -> None:
        """Send a log line to the caller (`notifications/message`), at an MCP level ("debug",
        "info", "notice", "warning", "error", ...). The server sends it when the caller asked for
        that level (`logging/setLevel` on 2025-11-25, the request's log level on 2026-07-28);
        tasks get none (the Tasks extension's rule): there the last line stays in the job's
        record. Checked like progress messages. Every line also goes to the worker's log."""
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
        checked = self._checked_message(message)
        if logger is not None and not isinstance(logger, str):
            raise TypeError("a logger name must be a str")
        _job_logger.log(_PY_LEVELS[level], "job %s: %s", self.job_id, checked, extra={"job_id": self.job_id})
        self._send_log({"level": level, "data": checked, "logger": logger})

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warning(self, message: str) -> None:
        self.log("warning", message)

    def error(self, message: str) -> None:
        self.log("error", message)

    async def ask_async(self, message: str, schema: type[M], *, key: str | None = None) -> M:
        """`ask` for `async def` jobs: the wait runs on a thread, so the job's event loop goes on."""
        return await asyncio.to_thread(self.ask, message, schema, key=key)

    async def sample_async(self, messages: str | Sequence[SamplingMessage], **options: Any) -> CreateMessageResult:
        """`sample` for `async def` jobs."""
        return await asyncio.to_thread(lambda: self.sample(messages, **options))

    async def roots_async(self) -> list[Root]:
        """`roots` for `async def` jobs."""
        return await asyncio.to_thread(self.roots)

    async def ask_all_async(self, questions: Mapping[str, Question]) -> dict[str, Any]:
        """`ask_all` for `async def` jobs."""
        return await asyncio.to_thread(self.ask_all, questions)

    def _default_key(self, kind: str) -> str:
        return f"{kind}-{self._upcoming_round()}"

    def _upcoming_round(self) -> int:
        """The number the next round of questions gets: one past the job's last, over all its runs."""
        if self._round is None:
            stored = self._require_store().client.hget(self._require_store().keys.job(self.job_id), "round")
            self._round = int(stored or 0)
        return self._round + 1

    def _can_ask(self) -> set[str]:
        store = self._require_store()
        stored = store.client.hget(store.keys.job(self.job_id), "can_ask")
        return set((stored.decode() if isinstance(stored, bytes) else stored or "").split())

    def _ask_round(self, requests: dict[str, Any], questions: Mapping[str, Question]) -> dict[str, Any]:
        """Park the job as `input_required` with `requests`, wait, and return the parsed answers."""
        store = self._require_store()
        round_number = self._upcoming_round()
        first = next((q.message for q in questions.values() if isinstance(q, Elicit)), None)
        message = _shortened(f"waiting for an answer: {first}" if first else "waiting for the caller", self)
        step = self._begins_step(message)
        if self.trace is not None:
            self.trace.report(self.value, self.total, message, step)
            self.trace.event("question", **{"mcp_jobs.round": round_number, "mcp_jobs.questions": sorted(requests)})
        outcome = store.write(
            self.job_id,
            JobState.INPUT_REQUIRED,
            expect=JobState.RUNNING,
            progress=self.value,
            total=self.total,
            message=message,
            round_number=round_number,
            step=step,
            extra={"inputs": json.dumps(requests, separators=(",", ":")), "pending": " ".join(requests)},
        )
        if outcome.refused:
            state, error = store.ended_as(self.job_id)
            raise JobEnded(_ended_message(self.job_id, state, error))
        if outcome.cancel_requested:
            raise JobCancelled(self.job_id)
        self._round = round_number
        answers = wait_for_answers(store, self.job_id, round_number, questions, self.input_timeout)
        if self.trace is not None:
            self.trace.event("answered", **{"mcp_jobs.round": round_number})
        return answers

    def _send_log(self, line: dict[str, Any]) -> None:
        store = self._require_store()
        try:
            store.write(
                self.job_id,
                JobState.RUNNING,
                expect=JobState.RUNNING,
                progress=self.value,
                total=self.total,
                message=self._message,
                log=line,
            )
        except REDIS_ERRORS as exc:
            logger.warning("job %s: log line skipped, Redis unavailable (%r)", self.job_id, exc)

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        fail_fast: bool = True,
        describe: Callable[[Any], str] = str,
    ) -> list[Any]:
        """Run `fn(item)` for every item as separate parts, on any worker, and return the results
        in order. The caller sees one progress: parts done out of `len(items)`, each report naming
        the part that finished (`describe(item)`).

        `fn` is a module-level function of the job modules; items and results travel as JSON.
        With `fail_fast` (the default) the first failing part ends the job with a `JobError` that
        names it, and the parts not yet started are cancelled; without it, a failed part's result
        is a `PartFailed` and the others go on. Parts may run more than once (after a lost
        worker): make them safe to repeat. See `mcp_jobs.fanout`.
        """
        # Imported here: the registry (which servers use) imports this module, and the worker side
        # of fan-out has no place in a server process.
        from mcp_jobs.fanout import run_inline, run_map

        if self._parts is None:
            return run_inline(self, fn, items, fail_fast, describe)
        self._maps += 1
        return run_map(self, self._parts, fn, items, fail_fast, describe, map_index=self._maps - 1)

    def _publish(self, value: float, total: float | None, message: str | None) -> None:
        """Send one checked update; raise if the job should stop (cancelled, or ended elsewhere)."""
        store = self._require_store()
        step = self._begins_step(message)
        if self.trace is not None:
            self.trace.report(value, total, message, step)
        try:
            outcome = store.write(
                self.job_id, JobState.RUNNING, progress=value, total=total, message=message, step=step
            )
            if outcome.refused:
                state, error = store.ended_as(self.job_id)
        except REDIS_ERRORS as exc:
            logger.warning("job %s: progress report skipped, Redis unavailable (%r)", self.job_id, exc)
            return
        if outcome.refused:
            raise JobEnded(_ended_message(self.job_id, state, error))
        if outcome.cancel_requested:
            raise JobCancelled(self.job_id)

    def _begins_step(self, message: str | None) -> bool:
        """Whether a write with `message` begins a step: its message differs from the step's
        (the rule `_timeline.StepClock` follows too); the step is then this one."""
        if message is None or message == self._step:
            return False
        self._step = message
        return True

    def _require_store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("this Progress has no job store; in unit tests use mcp_jobs.RecordingProgress")
        return self._store

    def _checked_message(self, message: object) -> str | None:
        if message is None:
            return None
        if not isinstance(message, str):
            raise TypeError(f"a progress message must be a str or None, not {type(message).__name__}")
        if len(message) > self.max_message_chars:
            raise ValueError(
                f"a progress message of {len(message)} characters is over the limit of "
                f"{self.max_message_chars} (MCP_JOBS_MAX_MESSAGE_CHARS)"
            )
        return message


_job_logger = logging.getLogger("mcp_jobs.job")
_PY_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}


def _shortened(message: str, progress: Progress) -> str:
    limit = progress.max_message_chars
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _ended_message(job_id: str, state: str, error: str | None) -> str:
    return f"job {job_id} was ended while it ran ({state}: {error or 'no reason recorded'}); this run stops"


def finite_number(name: str, value: object) -> float:
    """`value` as a float, if it is a finite real number (not a bool); else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except (OverflowError, TypeError):
        raise ValueError(f"{name} is too large to be sent as a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, not {number}")
    return number
