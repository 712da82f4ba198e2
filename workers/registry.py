"""The `@job` decorator and the registry of jobs.

A job is a plain typed function. Its parameters (except the `Progress` one) become the tool's input
schema, its docstring the tool's description and its return annotation the output schema. The
schemas are built by the MCP SDK's own `func_metadata`, so the server validates arguments and
results exactly as it would for an ordinary SDK tool, and the worker re-validates the arguments
with the very same model.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata
from mcp.shared.inbound import find_invalid_x_mcp_header
from mcp.types import CallToolResult

from mcp_jobs.asking import Capability
from mcp_jobs.content import decode_blocks, encode_blocks, returns_content
from mcp_jobs.progress import Progress

F = TypeVar("F", bound=Callable[..., Any])

TaskSupport = Literal["forbidden", "optional", "required"]
"""Whether a job may run as an MCP task (Tasks extension), for clients that opt in:
`optional` (a task for clients that opt in, a streaming call for the others), `required` (clients
that do not opt in get -32021), `forbidden` (always a streaming call)."""

_registry: dict[str, JobSpec] = {}
_prompts: dict[str, Callable[..., Any]] = {}
_resources: dict[str, ServerResource] = {}


@dataclass(frozen=True)
class ServerResource:
    """A resource (or resource template, when `uri` has `{placeholders}`) of the job modules,
    served by the server process: a plain SDK resource function."""

    uri: str
    fn: Callable[..., Any]
    mime_type: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """A registered job and its options."""

    name: str
    fn: Callable[..., Any]
    description: str
    metadata: FuncMetadata
    """The SDK's argument model and output schema for `fn` (the Progress parameter excluded)."""
    progress_param: str | None
    """Name of the parameter that receives the `Progress` reporter, if the job wants one."""
    time_limit: float | None
    """Hard limit in seconds; the job gets a soft-limit exception a little earlier."""
    queue: str | None
    """Celery queue to route the job to (None: the default queue)."""
    retry_safe: bool
    """Whether a re-run after a lost worker is harmless (enables late acknowledgement)."""
    returns_content: bool = False
    """Whether `fn` returns content blocks (images, audio, files: see `mcp_jobs.content`) rather
    than JSON data."""
    schema_override: dict[str, Any] | None = None
    """A hand-written input schema published instead of the one derived from the signature."""
    task: TaskSupport = "optional"
    """Whether it may run as an MCP task (see `TaskSupport`)."""
    handoff_after: float | None = None
    """Seconds after which a streaming call still running hands the job off (None: the global
    `MCP_JOBS_HANDOFF_AFTER`)."""
    scopes: tuple[str, ...] = ()
    """OAuth scopes a caller's token must carry to run it (when authentication is on)."""
    requires: tuple[Capability, ...] = ()
    """Client capabilities it cannot do without ("elicitation", "sampling", "roots"): a caller
    whose client lacks one is refused with -32021 before anything is queued."""
    task_after: float | None = None
    """Seconds a call that opts in to tasks and asks for progress streams before it becomes a
    task (None: `MCP_JOBS_TASK_AFTER`)."""
    oversized: Literal["fail", "artifacts"] = "fail"
    """What a content result over `MCP_JOBS_MAX_RESULT_BYTES` does: fail the call (the default),
    or have its files, images and audio stored as artifacts and sent by link instead."""
    asks_first: bool = False
    """As a task, it asks its questions before it starts the long work: questions asked before
    its first progress report are settled on the `tools/call` itself (multi-round, 2026-07-28),
    and the task handle is returned at that report (or at its end)."""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def input_schema(self) -> dict[str, Any]:
        """The tool's published input schema."""
        return self.schema_override or self.metadata.arg_model.model_json_schema(by_alias=True)

    def validate_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate raw (JSON) arguments into the keyword arguments of `fn`."""
        return self.metadata.validate_arguments(arguments)

    def encode_result(self, value: Any) -> Any:
        """What the worker stores for a return value: content blocks in their JSON form, or the
        value itself (made JSON-able by the caller)."""
        return encode_blocks(self.metadata.convert_result(value)) if self.returns_content else value  # type: ignore[arg-type]

    def tool_result(self, stored: Any) -> CallToolResult:
        """The tool result for what the worker stored: blocks validated back into content, or data
        validated against the output schema (the SDK's own conversion)."""
        if self.returns_content:
            return CallToolResult(content=decode_blocks(stored))
        converted = self.metadata.convert_result(stored)
        if not isinstance(converted, CallToolResult):
            raise TypeError(f"job {self.name} produced a {type(converted).__name__}, not a tool result")
        return converted


@overload
def job(fn: F, /) -> F: ...


@overload
def job(
    *,
    name: str | None = None,
    description: str | None = None,
    time_limit: float | None = None,
    queue: str | None = None,
    retry_safe: bool = False,
    input_schema: dict[str, Any] | None = None,
    task: TaskSupport = "optional",
    handoff_after: float | None = None,
    scopes: Iterable[str] = (),
    requires: Iterable[Capability] = (),
    asks_first: bool = False,
    oversized: Literal["fail", "artifacts"] = "fail",
    task_after: float | None = None,
) -> Callable[[F], F]: ...


def job(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    time_limit: float | None = None,
    queue: str | None = None,
    retry_safe: bool = False,
    input_schema: dict[str, Any] | None = None,
    task: TaskSupport = "optional",
    handoff_after: float | None = None,
    scopes: Iterable[str] = (),
    requires: Iterable[Capability] = (),
    asks_first: bool = False,
    oversized: Literal["fail", "artifacts"] = "fail",
    task_after: float | None = None,
) -> F | Callable[[F], F]:
    """Register a function as a job, and so as an MCP tool.

    Usable bare (`@job`) or with options (`@job(time_limit=60)`). The function is returned
    unchanged, so it stays callable in unit tests.

    - `time_limit`: seconds; the job gets `SoftTimeLimitExceeded` at the limit, a kill 5 s later.
    - `queue`: the Celery queue to route it to.
    - `retry_safe`: running it again from the start is harmless (re-run after a lost worker).
    - `input_schema`: publish this JSON Schema instead of the derived one, for what pydantic
      cannot express (2020-12 `if`/`then`/`else`, `$anchor`, ...). Arguments are still
      validated against the signature, so keep the two in agreement.
    - `task`: whether it may run as an MCP task for clients that opt in (`TaskSupport`).
    - `handoff_after`: seconds after which a call still running returns and leaves the job
      running, for clients that cannot wait that long (see `mcp_jobs.server.handoff`).
    - `scopes`: OAuth scopes a caller's token must carry to run it (403 `insufficient_scope`).
    - `requires`: client capabilities it cannot do without ("elicitation", "sampling",
      "roots"); callers whose client lacks one get -32021 before anything is queued. (A job that
      can do without checks `progress.supports(...)` instead, or catches `CannotAsk`.)
    - `oversized`: "artifacts" has a content result over `MCP_JOBS_MAX_RESULT_BYTES` go by link
      (its embedded files, images and audio stored as artifacts) instead of failing.
    - `task_after`: seconds a call that opts in to tasks and asks for progress streams before it
      becomes a task (`MCP_JOBS_TASK_AFTER`, 10 s; 0: a task at once).
    - `asks_first`: as a task, settle the questions it asks before its first progress report on
      the call itself, and return the task handle at that report (see `JobSpec.asks_first`).

    A parameter can be mirrored into an HTTP header for routing (SEP-2243), so a load balancer
    sees it without reading bodies: `tenant: Annotated[str, Field(json_schema_extra={"x-mcp-header":
    "Tenant"})]` makes 2026-07-28 clients send `Mcp-Param-Tenant`, which the server checks
    against the argument (a mismatch is refused with -32020 before anything is queued).
    """

    def register(func: F) -> F:
        spec = build_spec(
            func,
            name=name,
            description=description,
            time_limit=time_limit,
            queue=queue,
            retry_safe=retry_safe,
            input_schema=input_schema,
            task=task,
            handoff_after=handoff_after,
            scopes=scopes,
            requires=requires,
            asks_first=asks_first,
            oversized=oversized,
            task_after=task_after,
        )
        existing = _registry.get(spec.name)
        if existing is not None and existing.fn is not func:
            raise ValueError(f"a job named {spec.name!r} is already registered ({existing.fn.__module__})")
        _registry[spec.name] = spec
        return func

    return register(fn) if fn is not None else register


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    time_limit: float | None = None,
    queue: str | None = None,
    retry_safe: bool = False,
    input_schema: dict[str, Any] | None = None,
    task: TaskSupport = "optional",
    handoff_after: float | None = None,
    scopes: Iterable[str] = (),
    requires: Iterable[Capability] = (),
    asks_first: bool = False,
    oversized: Literal["fail", "artifacts"] = "fail",
    task_after: float | None = None,
) -> JobSpec:
    """Inspect `fn` and build its `JobSpec` (without registering it)."""
    if time_limit is not None and time_limit <= 0:
        raise ValueError("time_limit must be positive")
    if handoff_after is not None and handoff_after <= 0:
        raise ValueError("handoff_after must be positive")
    if task_after is not None and task_after < 0:
        raise ValueError("task_after must not be negative")
    progress_param = _find_progress_param(fn)
    skip = [progress_param] if progress_param else []
    spec = JobSpec(
        name=name or fn.__name__,
        fn=fn,
        description=inspect.cleandoc(description or fn.__doc__ or ""),
        metadata=func_metadata(fn, skip_names=skip),
        progress_param=progress_param,
        time_limit=time_limit,
        queue=queue,
        retry_safe=retry_safe,
        returns_content=returns_content(typing.get_type_hints(fn, include_extras=True).get("return")),
        schema_override=input_schema,
        task=task,
        handoff_after=handoff_after,
        scopes=tuple(scopes),
        requires=tuple(requires),
        asks_first=asks_first,
        oversized=oversized,
        task_after=task_after,
    )
    if oversized == "artifacts" and not spec.returns_content:
        raise ValueError(
            f"job {spec.name!r}: oversized='artifacts' needs a job that returns content; a structured result "
            "comes inline (its clients validate it against the output schema): return a resource link instead"
        )
    if (reason := find_invalid_x_mcp_header(spec.input_schema)) is not None:
        raise ValueError(f"job {spec.name!r} has an invalid x-mcp-header annotation: {reason}")
    return spec


def _find_progress_param(fn: Callable[..., Any]) -> str | None:
    hints = typing.get_type_hints(fn)
    for param in inspect.signature(fn).parameters:
        if hints.get(param) is Progress:
            return param
    return None


def prompt(fn: F) -> F:
    """Register a function as an MCP prompt of the job modules' server (`prompts/get`), by its name.

    Prompts are templates a client fills in, not work: they run in the server process, as plain
    SDK prompts (`mcp.server.mcpserver.prompts.Prompt`), never on a worker. Keep them light."""
    existing = _prompts.get(fn.__name__)
    if existing is not None and existing is not fn:
        raise ValueError(f"a prompt named {fn.__name__!r} is already registered ({existing.__module__})")
    _prompts[fn.__name__] = fn
    return fn


def resource(uri: str, *, mime_type: str | None = None, description: str | None = None) -> Callable[[F], F]:
    """Register a function as an MCP resource (or resource template: `uri` with `{params}`, which
    the function takes as arguments) of the job modules' server. Like prompts, resources are
    read in the server process, never on a worker: keep them light (a job's own files are
    artifacts, `progress.artifact`)."""

    def register(fn: F) -> F:
        existing = _resources.get(uri)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"a resource {uri!r} is already registered ({existing.fn.__module__})")
        _resources[uri] = ServerResource(uri, fn, mime_type, description or inspect.cleandoc(fn.__doc__ or ""))
        return fn

    return register


def load_resources(modules: Iterable[str]) -> list[ServerResource]:
    """The resources of the job modules (imported by `load_jobs`)."""
    names = list(modules)
    return [entry for entry in _resources.values() if _in_modules(entry.fn, names)]


def load_prompts(modules: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """The prompts of the job modules (imported by `load_jobs`), by name."""
    names = list(modules)
    return {name: fn for name, fn in _prompts.items() if _in_modules(fn, names)}


def _in_modules(fn: Callable[..., Any], modules: list[str]) -> bool:
    return any(fn.__module__ == module or fn.__module__.startswith(module + ".") for module in modules)


def load_jobs(modules: Iterable[str]) -> dict[str, JobSpec]:
    """Import the job modules and return their jobs (defined in them or their submodules), by name.

    Only those: a process that imported other job modules (a test run, an embedding application)
    still serves exactly what its settings name.
    """
    names = list(modules)
    for module in names:
        importlib.import_module(module)
    return {name: spec for name, spec in _registry.items() if _in_modules(spec.fn, names)}
