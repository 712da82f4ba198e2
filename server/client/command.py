"""`mcp-jobs call` and `mcp-jobs tools`: call a tool on any MCP server and watch its progress.

`call` speaks to any server (Streamable HTTP URL, or `stdio:<command line>`), sends a progress
token and draws what comes back: a live bar (value/total, percentage, step message, elapsed time,
rate) on a terminal, one plain line per update otherwise, always on stderr so that stdout carries
the result alone. Ctrl-C cancels the call the way the protocol says (the SDK's courtesy cancel: a
`notifications/cancelled`, or over 2026-07-28 HTTP the aborted POST; `tasks/cancel` for a task).
`--task` runs the call as a task on whichever wire the server offers: the Tasks extension
(`io.modelcontextprotocol/tasks`, 2026-07-28) through the SDK's `ClientExtension`, polling
`tasks/get` until the task settles; or 2025-11-25's `params.task`, waiting on `tasks/result`.

A job may ask its caller things mid-call (`Responder`): a form is filled in from `--answer` /
`--answers` and, on a terminal, by asking the user field by field; a sampling request gets
`--sample-reply`; `roots/list` gets the `--root`s. The client declares only the capabilities it
can answer, so a server never asks what nobody is there to answer.

A result may link to files the tool made (`resource_link` blocks): they are shown as `link:` lines,
and with `--save-artifacts DIR` each is read (`resources/read`, same connection) into DIR under a
name made safe (`artifacts`); `--json-output` then adds `savedArtifacts` and `failedArtifacts`.

The pieces: `arguments` (the target, the arguments and the given answers), `view` (the progress
display), `answers` and `forms` (answering a job's questions), `tasks` (the Tasks extension) and
`artifacts` (saving linked resources); this module connects, runs the call and reports the outcome.
Whatever the server sent is shown with its control characters escaped (`_text.printable`).

Exit codes: 0 the call succeeded; 1 the server answered with an error (an `isError` result, a
JSON-RPC error, a failed or cancelled task), or with `--save-artifacts` a link could not be read
or saved (the others are saved all the same); 2 usage (bad options or arguments, an unknown tool);
3 no answer from the server (connection, HTTP, transport or protocol failure); 130 cancelled with
Ctrl-C (143 on SIGTERM).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import anyio
import anyio.from_thread
import anyio.lowlevel
import click
import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client import ClientExtension
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, METHOD_NOT_FOUND
from pydantic import ValidationError
from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mcp_jobs import __version__, tracing
from mcp_jobs._contract import JOB_ID_META_KEY, parse_status_line
from mcp_jobs._text import json_safe, printable
from mcp_jobs.server.client.answers import SAMPLING_MODEL, Callbacks, Givens, Responder
from mcp_jobs.server.client.arguments import (
    Target,
    build_arguments,
    describe_arguments,
    parse_answers,
    parse_json_option,
    parse_roots,
    parse_target,
    split_args,
    unknown_arguments,
)
from mcp_jobs.server.client.artifacts import (
    ArtifactReport,
    FailedArtifact,
    SavedArtifact,
    prepare_directory,
    resource_links,
    save_artifacts,
)
from mcp_jobs.server.client.core_tasks import call_as_core_task, offers_core_tasks
from mcp_jobs.server.client.tasks import CallFailed, TaskWatcher
from mcp_jobs.server.client.view import (
    LogToView,
    ProgressMode,
    ProgressView,
    format_size,
)

EXIT_OK = 0
EXIT_TOOL_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

CLIENT_INFO = types.Implementation(name="mcp-jobs-call", version=__version__)

LEGACY = "2025-11-25"
Protocol = Literal["auto", "2025-11-25"]
LIST_PAGES_MAX = 100
STDERR_TAIL_LINES = 20
SDK_STAND_INS = {(INTERNAL_ERROR, "Server returned an error response"), (METHOD_NOT_FOUND, "Not Found")}
"""The errors the SDK's HTTP transport makes up for an HTTP error status without a JSON-RPC body."""


class NoAnswer(Exception):
    """The server could not be reached or did not answer properly (exit 3)."""


# --- connecting ----------------------------------------------------------------------------------


@dataclass
class Diagnostics:
    """What explains a failure beyond the SDK's exception: the last HTTP error status seen on the
    wire (the SDK turns those into generic JSON-RPC errors, and the status is what tells the user
    what went wrong: 401, a token is needed), and a stdio server's stderr."""

    last_http_error: httpx2.Response | None = None
    server_log: IO[str] | None = None

    async def hook(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.last_http_error = response

    def describe_http(self) -> str | None:
        response = self.last_http_error
        if response is None:
            return None
        text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if response.status_code in (401, 403):
            challenge = response.headers.get("www-authenticate")
            if challenge:
                text += f" ({challenge})"
            if response.status_code == 401:
                text += "; pass a token with --header 'Authorization: Bearer <token>'"
        return text

    def server_log_tail(self) -> str:
        if self.server_log is None:
            return ""
        try:
            self.server_log.flush()
            self.server_log.seek(0)
            lines = self.server_log.read().splitlines()[-STDERR_TAIL_LINES:]
        except (OSError, ValueError):
            return ""
        return ("\nthe server's stderr (last lines):\n  " + "\n  ".join(lines)) if lines else ""


@dataclass
class Connection:
    client: Client
    diagnostics: Diagnostics


@asynccontextmanager
async def connect(
    target: Target,
    extensions: Sequence[ClientExtension] = (),
    diagnostics: Diagnostics | None = None,
    callbacks: Callbacks | None = None,
    protocol: Protocol = "auto",
) -> AsyncIterator[Connection]:
    """An SDK client for `target` (protocol version negotiated: 2026-07-28 when the server has it,
    2025-11-25 otherwise, or 2025-11-25 whatever it has), with the `callbacks` that answer the server's questions (see
    `Responder.callbacks`). A stdio server gets this process's environment and working directory;
    its stderr goes to a temporary file, shown when the connection fails."""
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    async with AsyncExitStack() as stack:
        if target.url is not None:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers=target.headers,
                    timeout=httpx2.Timeout(30.0, read=None),  # a long tool may stay silent: Ctrl-C ends the wait
                    event_hooks={"response": [diagnostics.hook]},
                )
            )
            transport = streamable_http_client(target.url, http_client=http)
        else:
            log = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by the stack)
            diagnostics.server_log = stack.enter_context(log)
            params = StdioServerParameters(
                command=target.command[0], args=list(target.command[1:]), env=dict(os.environ), cwd=os.getcwd()
            )
            transport = stdio_client(params, errlog=diagnostics.server_log)
        callbacks = callbacks or Callbacks()
        client = Client(
            transport,
            client_info=CLIENT_INFO,
            mode="legacy" if protocol == LEGACY else "auto",
            extensions=list(extensions) or None,
            elicitation_callback=callbacks.elicitation,
            sampling_callback=callbacks.sampling,
            list_roots_callback=callbacks.list_roots,
        )
        try:
            await stack.enter_async_context(client)
        except Exception as exc:
            raise NoAnswer(_connect_failure(target, exc, diagnostics)) from exc
        yield Connection(client, diagnostics)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


KNOWN = (MCPError, httpx2.HTTPError, OSError, ValidationError, TimeoutError, RuntimeError, NoAnswer, CallFailed)


def _main_error(exc: BaseException) -> BaseException | None:
    """The error worth showing out of the SDK's (nested) exception groups; None if it is a bug."""
    leaves = list(_leaves(exc))
    for kind in KNOWN:
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return None


def _connect_failure(target: Target, exc: BaseException, diagnostics: Diagnostics) -> str:
    error = _main_error(exc)
    if error is None:
        raise exc
    return f"cannot talk to {target.label}: {_describe(error, diagnostics)}{diagnostics.server_log_tail()}"


def _describe(error: BaseException, diagnostics: Diagnostics) -> str:
    """What went wrong, in words: the HTTP status behind the SDK's generic errors, and so on."""
    http = diagnostics.describe_http()
    if isinstance(error, MCPError):
        if http and (error.code, error.message) in SDK_STAND_INS:
            return http
        if error.code == CONNECTION_CLOSED:
            return "the server closed the connection"
        return f"{error.message} (JSON-RPC error {error.code})" + (f"; {http}" if http else "")
    if isinstance(error, httpx2.HTTPError):
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, FileNotFoundError):
        return f"command not found: {error.filename or error}"
    if isinstance(error, ValidationError):
        return f"the server sent an invalid message: {error.errors()[0]['msg'] if error.errors() else error}"
    if isinstance(error, RuntimeError) and str(error).startswith("Invalid structured content"):
        return f"protocol error: {error}"
    if isinstance(error, NoAnswer | CallFailed):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def list_all_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(LIST_PAGES_MAX):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


# --- running: signals, exit codes ----------------------------------------------------------------


@dataclass
class Interrupt:
    """The first SIGINT/SIGTERM, and what it cancels: the innermost scope that asked for it (the
    call itself while one is in flight, so the client stays up to tell the server), else all."""

    signum: int | None = None
    scopes: list[anyio.CancelScope] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def name(self) -> str:
        return "Ctrl-C" if self.signum == signal.SIGINT else "SIGTERM"

    def fire(self, signum: int) -> None:
        self.signum = signum
        if self.scopes:
            self.scopes[-1].cancel()

    @contextmanager
    def cancels(self) -> Iterator[anyio.CancelScope]:
        """A scope the next signal cancels (at once if one came already)."""
        with anyio.CancelScope() as scope:
            self.scopes.append(scope)
            try:
                if self.signum is not None:
                    scope.cancel()
                yield scope
            finally:
                self.scopes.remove(scope)


async def run_interruptible(body: Callable[[], Awaitable[int]], interrupt: Interrupt) -> int:
    """Run `body`; the first SIGINT/SIGTERM cancels it (or the part of it that asked, see
    `Interrupt.cancels`), and it cleans up and says so; a second one exits at once."""
    code = EXIT_OK
    async with anyio.create_task_group() as tg:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch() -> None:
                async for signum in signals:
                    if interrupt.signum is not None:
                        os._exit(128 + signum)  # asked twice: stop waiting for the cleanup
                    interrupt.fire(signum)

            tg.start_soon(watch)
            with interrupt.cancels():
                code = await body()
            tg.cancel_scope.cancel()
    return interrupt.exit_code if interrupt.signum is not None else code


def _run(body: Callable[[Interrupt], Awaitable[int]]) -> NoReturn:
    interrupt = Interrupt()

    async def main() -> int:
        return await run_interruptible(lambda: body(interrupt), interrupt)

    sys.exit(anyio.run(main))


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(console: Console, code: int, text: str) -> int:
    # Errors quote the server (and through it, jobs and callers): shown without control characters.
    console.print(Text(printable(f"error: {text}", keep_layout=True), style="red"), soft_wrap=True)
    return code


# --- `call` ------------------------------------------------------------------------------------


@dataclass
class CallRequest:
    target: Target
    tool: str
    base_arguments: dict[str, Any]
    pairs: list[tuple[str, str]]
    as_task: bool
    json_output: bool
    progress: ProgressMode
    given: Givens = field(default_factory=Givens)
    """What the job's questions get (see `answers.Givens`)."""
    save_artifacts: Path | None = None
    """`--save-artifacts DIR` (absolute, made already): where the result's linked resources go."""
    protocol: Protocol = "auto"
    """`--protocol`: negotiate (auto), or speak 2025-11-25 whatever the server has."""


async def run_call(request: CallRequest, interrupt: Interrupt, err: Console, out: Console) -> int:
    view = ProgressView(request.tool, request.progress, err)
    handler = LogToView(view.note)
    sdk_logger = logging.getLogger("mcp")
    sdk_logger.addHandler(handler)
    propagate, sdk_logger.propagate = sdk_logger.propagate, False

    def on_status(text: str | None, done: bool) -> None:
        value, total, message = parse_status_line(text)
        if done and value is None:
            value = total or view.state.total  # a completed task's last message may carry no numbers
        view.update(value, total, message)

    watcher = TaskWatcher(
        on_status=on_status,
        on_created=lambda task_id: view.note(f"task {task_id} created; polling tasks/get", style="dim"),
    )
    responder = Responder(view, request.given)
    diagnostics = Diagnostics()
    phase = ["connect"]
    code: int | None = None
    extensions = [watcher] if request.as_task else []
    try:
        callbacks = responder.callbacks()
        async with connect(request.target, extensions, diagnostics, callbacks, request.protocol) as connection:
            try:
                code = await _call_and_show(request, interrupt, connection, view, watcher, phase, out, err)
            except Exception as exc:  # classified here: raised out of the client, it would come grouped
                code = _call_failure(exc, request, diagnostics, phase[0], err)
            # Hanging up: what still arrives (a task's last status on the standalone stream) and
            # cannot be delivered any more is not news.
            handler.setLevel(logging.CRITICAL + 1)
        return code
    except NoAnswer as exc:
        return _fail(err, EXIT_CONNECTION, str(exc))
    except anyio.get_cancelled_exc_class():
        if interrupt.signum is not None:
            _say_cancelled(err, request, interrupt, phase[0], watcher)
        raise
    except Exception as exc:
        if code is not None:
            return code  # the answer is in; a failure while hanging up changes nothing
        return _call_failure(exc, request, diagnostics, phase[0], err)
    finally:
        view.stop()
        sdk_logger.removeHandler(handler)
        sdk_logger.propagate = propagate


async def _call_and_show(
    request: CallRequest,
    interrupt: Interrupt,
    connection: Connection,
    view: ProgressView,
    watcher: TaskWatcher,
    phase: list[str],
    out: Console,
    err: Console,
) -> int:
    phase[0] = "list"
    # Statuses seen while negotiating (a legacy server's 4xx to server/discover) are not news.
    connection.diagnostics.last_http_error = None
    try:
        tools = {tool.name: tool for tool in await list_all_tools(connection.client)}
    except MCPError as exc:
        view.note(f"warning: tools/list failed ({exc.message}); calling without the input schema", "yellow")
        tools = {}
    tool = tools.get(request.tool)
    if tools and tool is None:
        return _fail(err, EXIT_USAGE, f"no tool {request.tool!r} at {request.target.label}; it has: {', '.join(tools)}")
    schema = tool.input_schema if tool is not None else None
    arguments = build_arguments(request.base_arguments, request.pairs, schema)
    if unknown := unknown_arguments(arguments, schema):
        view.note(f"warning: {request.tool} does not declare {', '.join(map(repr, unknown))}", "yellow")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        view.update(progress, total, message)

    phase[0] = "call"
    view.start()
    result = None
    try:
        with interrupt.cancels():
            # With --task too: a server may stream a call that asks for progress before it makes
            # it a task (mcp-jobs' `task_after`), and one without tasks streams it whole.
            if request.as_task and offers_core_tasks(connection.client, tool):
                result = await call_as_core_task(connection.client, request.tool, arguments, watcher)
            else:
                result = await connection.client.call_tool(request.tool, arguments, progress_callback=on_progress)
    finally:
        view.stop()
    if result is None:  # cancelled by a signal; the client is still up, so the server has been told
        _say_cancelled(err, request, interrupt, phase[0], watcher)
        return interrupt.exit_code
    suffix = _note_done(request, result, view, watcher)
    report: ArtifactReport | None = None
    if request.save_artifacts is not None:
        phase[0] = "artifacts"
        report = await _save_artifacts(request.save_artifacts, result, connection.client, interrupt, err)
        if report is None:
            return interrupt.exit_code
    return _show_result(request, result, out, err, suffix, report)


async def _save_artifacts(
    directory: Path, result: types.CallToolResult, client: Client, interrupt: Interrupt, err: Console
) -> ArtifactReport | None:
    """The result's linked resources read into `directory`, each said on stderr as it is saved
    or fails; None when a signal cut it short (what was saved stays, a half-written file goes)."""
    links = resource_links(result)
    if not links:
        if not result.is_error:  # an error says why itself
            _note(err, "no resource links in the result: no artifacts to save", "dim")
        return ArtifactReport()

    async def read(uri: str) -> types.ReadResourceResult:
        return await client.read_resource(uri, cache_mode="bypass")  # the SDK's cache would hold a 2nd copy

    report: ArtifactReport | None = None
    with interrupt.cancels():
        report = await save_artifacts(links, directory, read, partial(_say_saved, err), partial(_say_failed, err))
    if report is None:
        _note(err, f"cancelled ({interrupt.name}) while saving the artifacts into {directory}", "yellow")
    return report


def _say_saved(err: Console, saved: SavedArtifact) -> None:
    _note(err, f"saved {saved.name} to {saved.path} ({format_size(saved.bytes)})", "green")
    if saved.size_mismatch:
        _note(err, f"warning: {saved.name} is {saved.bytes} bytes, the link said {saved.declared_size}", "yellow")


def _say_failed(err: Console, failed: FailedArtifact) -> None:
    _fail(err, EXIT_TOOL_ERROR, f"cannot save {failed.name} ({failed.uri}): {failed.error}")


def _note(err: Console, text: str, style: str) -> None:
    err.print(Text(printable(text), style=style), soft_wrap=True)  # names, URIs and errors are the server's


def _call_failure(exc: BaseException, request: CallRequest, diagnostics: Diagnostics, phase: str, err: Console) -> int:
    """The exit code and message for what went wrong; re-raises what is not understood (a bug)."""
    error = _main_error(exc)
    if error is None:
        raise exc
    if isinstance(error, NoAnswer):
        return _fail(err, EXIT_CONNECTION, str(error))
    if isinstance(error, CallFailed):
        return _fail(err, EXIT_TOOL_ERROR, str(error))
    if isinstance(error, MCPError) and phase == "call" and not _transport_failure(error, diagnostics):
        return _fail(err, EXIT_TOOL_ERROR, f"{error.message} (JSON-RPC error {error.code})")
    described = _describe(error, diagnostics)
    return _fail(err, EXIT_CONNECTION, f"{request.target.label}: {described}{diagnostics.server_log_tail()}")


def _transport_failure(error: MCPError, diagnostics: Diagnostics) -> bool:
    """A JSON-RPC error that stands for a broken connection or an HTTP failure, not an answer."""
    if error.code == CONNECTION_CLOSED:
        return True
    last = diagnostics.last_http_error
    return last is not None and (last.status_code in (401, 403) or (error.code, error.message) in SDK_STAND_INS)


def _say_cancelled(err: Console, request: CallRequest, interrupt: Interrupt, phase: str, watcher: TaskWatcher) -> None:
    if phase != "call":
        text = f"cancelled ({interrupt.name}) before {request.tool} was called"
    elif watcher.task_id is not None:
        text = f"cancelled ({interrupt.name}): sent tasks/cancel for task {watcher.task_id}"
        if watcher.cancel_outcome:
            text += f"; {watcher.cancel_outcome}"
    else:
        text = f"cancelled ({interrupt.name}): the call to {request.tool} was cancelled and the server told to stop it"
    err.print(Text(printable(text), style="yellow"), soft_wrap=True)  # the outcome quotes the server


def _note_done(request: CallRequest, result: types.CallToolResult, view: ProgressView, watcher: TaskWatcher) -> str:
    """Say on stderr how the call went (before any artifact is saved, so the time is the call's);
    the " (job ...)" / " (task ...)" suffix for the outcome's lines."""
    if request.as_task and watcher.task_id is None:
        view.note("note: the server answered without a task (no Tasks extension, or the tool forbids tasks)", "dim")
    job = (result.meta or {}).get(JOB_ID_META_KEY)
    suffix = f" (job {job})" if job else f" (task {watcher.task_id})" if watcher.task_id else ""
    if not result.is_error and view.mode != "off":
        view.note(f"{request.tool} done in {view.state.elapsed:.1f} s{suffix}", "green")
    return suffix


def _show_result(
    request: CallRequest,
    result: types.CallToolResult,
    out: Console,
    err: Console,
    suffix: str,
    report: ArtifactReport | None,
) -> int:
    """The result on stdout (with `--json-output`, plus what `--save-artifacts` did) and the exit
    code: an error result is 1, and so is an artifact that could not be saved."""
    if request.json_output:
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        _print_json(out, (dumped | report.as_json()) if report is not None else dumped)
    if result.is_error:
        text = "\n".join(_block_text(block) for block in result.content) or f"{request.tool} reported an error"
        return _fail(err, EXIT_TOOL_ERROR, text + suffix)
    if not request.json_output:
        _print_content(result, out, err)
    return EXIT_TOOL_ERROR if report is not None and report.failed else EXIT_OK


def _block_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        size = len(block.data) * 3 // 4
        return f"[{block.type}: {block.mime_type}, about {size} bytes]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        return f"[resource {resource.uri}: {resource.mime_type or 'binary'}, about {len(resource.blob) * 3 // 4} bytes]"
    if isinstance(block, types.ResourceLink):
        return _link_text(block)
    return f"[{getattr(block, 'type', 'content')}]"


def _link_text(link: types.ResourceLink) -> str:
    """`link: report.csv mcp-jobs://jobs/<id>/artifacts/report.csv (text/csv, 20.0 MiB)`."""
    details = [part for part in (link.mime_type, None if link.size is None else format_size(link.size)) if part]
    return f"link: {link.name} {link.uri}" + (f" ({', '.join(details)})" if details else "")


def _print_content(result: types.CallToolResult, out: Console, err: Console) -> None:
    """Structured content as pretty JSON; otherwise each content block (text as is). Beside
    structured content, resource links are listed on stderr: stdout stays the JSON alone."""
    if result.structured_content is not None:
        _print_json(out, result.structured_content)
        for link in resource_links(result):
            _note(err, _link_text(link), "")
        return
    for block in result.content:
        text = _block_text(block)
        if out.is_terminal:  # lines and tabs kept, escape sequences shown, not obeyed
            out.print(Text(printable(text, keep_layout=True)), soft_wrap=True)
        else:
            click.echo(text)  # to a file or a pipe: the result exactly as the server sent it


def _print_json(out: Console, data: Any) -> None:
    text = json_safe(json.dumps(data, indent=2, ensure_ascii=False))
    if out.is_terminal:  # highlighted as is: `print_json` would re-encode it, C1 controls raw again
        out.print(JSONHighlighter()(text), soft_wrap=True)
    else:
        click.echo(text)  # exactly JSON, never re-wrapped to a console width


target_argument = click.argument("url", metavar="URL")
header_option = click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="An HTTP header for every request, e.g. 'Authorization: Bearer TOKEN' (repeatable).",
)
json_output_option = click.option(
    "--json-output", is_flag=True, help="Print the server's raw JSON answer on stdout, for scripts."
)


CALL_EPILOG = """URL is a Streamable HTTP endpoint (http://127.0.0.1:8000/mcp) or stdio:COMMAND LINE
(stdio:'mcp-jobs serve --transport stdio', started with this environment). Progress goes to
stderr, the result to stdout.

\b
Exit codes:
  0    the call succeeded
  1    the tool or the server reported an error (isError result, JSON-RPC error, failed task),
       or a linked resource could not be saved (--save-artifacts)
  2    usage: bad options or arguments, unknown tool
  3    connection or protocol error (unreachable, HTTP 401/404, the server went away)
  130  cancelled with Ctrl-C (143: SIGTERM); the server was told to stop the call

A job may ask questions while it runs. A form is answered from --answer/--answers first (by
field name, or by question key with a JSON object value); on a terminal the rest is asked field
by field (Enter takes the default, an empty answer to a required field declines, Ctrl-D cancels);
otherwise a form missing a required answer is declined. With neither answers nor a terminal,
the client does not offer to answer forms at all; sampling and roots only with --sample-reply
and --root.

A result may link to resources (files the tool made): each is shown as a "link:" line (on
stderr when the result is structured JSON). With --save-artifacts DIR, each is read with
resources/read (on the same connection) and written to DIR, made if missing, under the link's
name made a plain file name: separators become _, no .. or control characters, and an existing
file is never overwritten (name-1.ext, name-2.ext... instead). Text is written as UTF-8, a blob
decoded; a size other than the link's is warned about. With --json-output the result gains "savedArtifacts": [{"uri", "name",
"path", "bytes"}] and "failedArtifacts": [{"uri", "name", "error"}]. A link that cannot be read
or saved is reported, the others are saved, and the exit code is 1.
"""


@click.command(epilog=CALL_EPILOG)
@target_argument
@click.argument("tool")
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="KEY=VALUE",
    help="One argument (repeatable). VALUE is JSON when it parses (5, true, [1,2], null), else a string; "
    "a string-typed parameter always gets the string.",
)
@click.option(
    "--json",
    "json_arguments",
    metavar="'{...}'",
    help="All arguments as a JSON object (or @FILE, @- for stdin); --arg values go over it.",
)
@header_option
@click.option(
    "--task",
    "as_task",
    is_flag=True,
    help="Run it as a task, on the tasks wire the server offers (2026-07-28's Tasks extension, or "
    "2025-11-25's tasks): Ctrl-C sends tasks/cancel.",
)
@click.option(
    "--protocol",
    type=click.Choice(["auto", LEGACY]),
    default="auto",
    show_default=True,
    help=f"The protocol revision: the newest both sides have (auto), or {LEGACY} whatever the server has "
    "(to see a server as older clients, VS Code's among them, do).",
)
@json_output_option
@click.option(
    "--progress",
    type=click.Choice(["auto", "bar", "lines", "off"]),
    default="auto",
    show_default=True,
    help="How progress is shown on stderr: a live bar (auto on a terminal), a line per update "
    "(auto otherwise), or not at all.",
)
@click.option(
    "--answer",
    "answer_pairs",
    multiple=True,
    metavar="FIELD=VALUE",
    help="An answer to a form the job asks (repeatable): it fills in every form field named FIELD "
    "(--answer name=Alice --answer ok=true). VALUE is JSON when it parses, else a string; a JSON "
    'object answers the question with that key instead (step1=\'{"name": "Alice"}\', keys '
    "reach the client on 2026-07-28) and wins over field names.",
)
@click.option(
    "--answers",
    "answers_file",
    metavar="FILE.json",
    help="Answers as a JSON object (- for stdin), same rule as --answer: field names to values, or "
    "question keys to objects of them; --answer goes over it. With answers for every required field, "
    "nothing is asked on the terminal.",
)
@click.option(
    "--sample-reply",
    metavar="TEXT",
    help="Answer the job's sampling requests (an LLM completion) with TEXT, as model "
    f"{SAMPLING_MODEL!r}; without it sampling is refused (not offered to the server).",
)
@click.option(
    "--root",
    "root_values",
    multiple=True,
    metavar="PATH_OR_URI",
    help="A root the server may ask for with roots/list (repeatable): a path (made a file:// URI) or a "
    "file:// URI; without any, roots are not offered.",
)
@click.option(
    "--save-artifacts",
    "artifacts_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the resources the result links to (resource_link blocks) into DIR, made if missing; see below.",
)
def call(
    url: str,
    tool: str,
    args: tuple[str, ...],
    json_arguments: str | None,
    headers: tuple[str, ...],
    as_task: bool,
    json_output: bool,
    progress: ProgressMode,
    answer_pairs: tuple[str, ...],
    answers_file: str | None,
    sample_reply: str | None,
    root_values: tuple[str, ...],
    artifacts_dir: Path | None,
    protocol: Protocol,
) -> None:
    """Call TOOL on the MCP server at URL and watch its progress live."""
    if json_arguments == "@-" and answers_file == "-":
        raise click.BadParameter("stdin can feed --json or --answers, not both", param_hint="--answers")
    request = CallRequest(
        target=parse_target(url, headers),
        tool=tool,
        base_arguments=parse_json_option(json_arguments),
        pairs=split_args(args),
        as_task=as_task,
        json_output=json_output,
        progress=progress,
        given=Givens(
            answers=parse_answers(answer_pairs, answers_file),
            sample_reply=sample_reply,
            roots=parse_roots(root_values),
            interactive=_stdin_is_a_terminal(),
        ),
        save_artifacts=_artifacts_directory(artifacts_dir),
        protocol=protocol,
    )
    err = _stderr_console()
    if progress == "bar" and not err.is_terminal:
        err = Console(stderr=True, highlight=False, force_terminal=True)
    out = Console(highlight=False)
    tracing.configure(tracing.CLI_SERVICE)

    async def traced(interrupt: Interrupt) -> int:
        # One trace for the whole call: the SDK's own spans of each request (and the server's and
        # the worker's, through `_meta.traceparent`) sit under this one.
        with tracing.span(f"mcp-jobs call {tool}", {"gen_ai.tool.name": tool}):
            return await run_call(request, interrupt, err, out)

    _run(traced)


def _artifacts_directory(path: Path | None) -> Path | None:
    """`--save-artifacts DIR`, made before the call: a DIR that cannot be is a usage error, found
    before a long job runs rather than after."""
    if path is None:
        return None
    try:
        return prepare_directory(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot make {path}: {exc.strerror or exc}", param_hint="--save-artifacts") from exc


def _stdin_is_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed
        return False


# --- `tools` -----------------------------------------------------------------------------------


async def run_tools(target: Target, json_output: bool, out: Console, err: Console, interrupt: Interrupt) -> int:
    diagnostics = Diagnostics()
    try:
        async with connect(target, diagnostics=diagnostics) as connection:
            tools = await list_all_tools(connection.client)
    except NoAnswer as exc:
        return _fail(err, EXIT_CONNECTION, str(exc))
    except anyio.get_cancelled_exc_class():
        if interrupt.signum is not None:
            err.print(Text(f"cancelled ({interrupt.name})", style="yellow"))
        raise
    except Exception as exc:
        error = _main_error(exc)
        if error is None:
            raise
        return _fail(
            err, EXIT_CONNECTION, f"{target.label}: {_describe(error, diagnostics)}{diagnostics.server_log_tail()}"
        )
    if json_output:
        dumped = [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in tools]
        click.echo(json_safe(json.dumps({"tools": dumped}, indent=2, ensure_ascii=False)))
        return EXIT_OK
    table = Table(title=f"{len(tools)} tools at {escape(target.label)}", title_justify="left", show_lines=True)
    table.add_column("Tool", style="bold cyan", no_wrap=True)
    table.add_column("Arguments (* required)", overflow="fold")
    table.add_column("Description", overflow="fold", ratio=1)
    for tool in tools:
        description = (tool.description or "").strip().split("\n\n", 1)[0]
        arguments = "\n".join(printable(line) for line in describe_arguments(tool.input_schema))
        table.add_row(Text(printable(tool.name)), Text(arguments), Text(printable(description, keep_layout=True)))
    out.print(table)
    return EXIT_OK


@click.command()
@target_argument
@header_option
@json_output_option
def tools(url: str, headers: tuple[str, ...], json_output: bool) -> None:
    """List the tools of the MCP server at URL, with their arguments (--json-output: full schemas)."""
    target = parse_target(url, headers)
    _run(lambda interrupt: run_tools(target, json_output, Console(highlight=False), _stderr_console(), interrupt))
