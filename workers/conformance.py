"""The official MCP conformance suite's fixture tools, as real jobs.

Loaded only on request (`--jobs mcp_jobs.conformance`, or in `MCP_JOBS_JOB_MODULES`): each tool
runs on a Celery worker like any job, so the suite (npm `@modelcontextprotocol/conformance`)
checks the job path itself, not a stand-in. Names, arguments and results are the ones the
suite's scenarios call for; only the features mcp-jobs offers have fixtures (see
`tests/conformance/expected-failures.yml` for the rest). The questions the fixtures ask (the
multi-round `test_input_required_result_*` tools, elicitation, sampling) are asked by the jobs
on their workers, and the one prompt is served by the server process (`mcp_jobs.registry.prompt`).
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    CreateMessageResult,
    ElicitResult,
    EmbeddedResource,
    ImageContent,
    InputRequiredResult,
    TextContent,
    TextResourceContents,
)
from pydantic import Field

from mcp_jobs import content
from mcp_jobs._events import Keys
from mcp_jobs.asking import Elicit, ListRoots, Question, Sample
from mcp_jobs.errors import JobError
from mcp_jobs.progress import Progress
from mcp_jobs.registry import job, prompt, resource
from mcp_jobs.settings import get_settings

RED_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
SILENT_WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")


@job
def test_simple_text() -> content.TextContent:
    """Return a simple text block."""
    return content.text("This is a simple text response for testing.")


@job
def test_image_content() -> content.Image:
    """Return an image (a 1x1 PNG)."""
    return content.Image(data=RED_PIXEL_PNG, format="png")


@job
def test_audio_content() -> content.Audio:
    """Return audio (a short WAV)."""
    return content.Audio(data=SILENT_WAV, format="wav")


@job
def test_embedded_resource() -> content.EmbeddedResource:
    """Return an embedded text resource."""
    return content.embedded_file("test://embedded-resource", "This is an embedded resource content.", "text/plain")


@job
def test_multiple_content_types() -> list[content.TextContent | content.Image | content.EmbeddedResource]:
    """Return text, an image and an embedded resource together."""
    return [
        content.text("Multiple content types test:"),
        content.Image(data=RED_PIXEL_PNG, format="png"),
        content.embedded_file("test://mixed-content-resource", '{"test":"data","value":123}', "application/json"),
    ]


@job
def test_error_handling() -> str:
    """Fail on purpose, with an error result the model can read."""
    raise JobError("This tool intentionally returns an error for testing")


@job
def test_tool_with_progress(progress: Progress) -> str:
    """Report progress 0, 50 and 100 of 100, a little apart."""
    for value in (0, 50, 100):
        progress.report(value, f"{value}% done", total=100)
        if value < 100:
            progress.sleep(0.05)
    return "Progress test completed"


@job
def test_streaming_elicitation() -> str:
    """Answer at once, asking nothing (the suite checks no request goes out on the wrong stream)."""
    return "No elicitation asked for."


@job
def test_logging_tool(progress: Progress) -> str:
    """Send one log line (only a client that asked for that level receives it)."""
    progress.log("info", "a log line from the job")
    return "Logged one line."


@job
def test_tool_with_logging(progress: Progress) -> str:
    """Send three info log lines, 50 ms apart."""
    for number, line in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if number:
            progress.sleep(0.05)
        progress.log("info", line)
    return "Tool with logging executed successfully"


@job(requires=("sampling",))
def test_sampling(progress: Progress, prompt: str) -> str:
    """Ask the caller's model `prompt` and return its reply."""
    reply = progress.sample(prompt, max_tokens=100)
    return f"LLM response: {_text_of(reply)}"


@job(requires=("elicitation",))
def test_elicitation(progress: Progress, message: str) -> str:
    """Ask the user `message` for a username and an email, and return what they did."""
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    result = _outcome(progress, message, schema)
    return f"User response: <action: {result.action}, content: {json.dumps(result.content or {})}>"


@job(requires=("elicitation",))
def test_elicitation_sep1034_defaults(progress: Progress) -> str:
    """Ask for fields that all have defaults (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": True},
        },
    }
    return _completed(progress, "Please review and update the form fields with defaults", schema)


@job(requires=("elicitation",))
def test_elicitation_sep1330_enums(progress: Progress) -> str:
    """Ask with the five enum shapes of SEP-1330."""
    titled = [
        {"const": f"value{i}", "title": f"{word} Option"} for i, word in ((1, "First"), (2, "Second"), (3, "Third"))
    ]
    choices = [
        {"const": f"value{i}", "title": f"{word} Choice"} for i, word in ((1, "First"), (2, "Second"), (3, "Third"))
    ]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": choices}},
        },
    }
    return _completed(progress, "Please pick from the enum fields", schema)


@job(requires=("sampling",))
def test_missing_capability(progress: Progress) -> str:
    """Needs sampling: a client that did not declare it is refused (-32021) before anything runs."""
    return f"LLM response: {_text_of(progress.sample('Say hello', max_tokens=20))}"


# The list-changed hooks of `server-stateless`: announce a change of the tool or prompt list on the
# namespace's events channel, which every server relays to its `subscriptions/listen` streams.


@job
def test_trigger_tool_change() -> str:
    """Announce that the tool list changed."""
    _announce("notifications/tools/list_changed")
    return "announced: tools/list_changed"


@job
def test_trigger_prompt_change() -> str:
    """Announce that the prompt list changed."""
    _announce("notifications/prompts/list_changed")
    return "announced: prompts/list_changed"


def _announce(method: str) -> None:
    from mcp_jobs.redis_connect import publish, sync_client

    settings = get_settings()
    client = sync_client(settings)
    try:
        publish(client, Keys(settings.namespace).events(), json.dumps({"method": method, "params": {}}))
    finally:
        client.close()


# Multi-round input (SEP-2322): each job asks and waits for its answer, on its worker.

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@job
def test_input_required_result_elicitation(progress: Progress) -> str:
    """Ask for a name, and greet it."""
    answer = progress.ask_all({"user_name": Elicit("What is your name?", NAME_SCHEMA)})["user_name"]
    return f"Hello, {answer['name']}!"


@job
def test_input_required_result_sampling(progress: Progress) -> str:
    """Ask the caller's model a question, and return its answer."""
    reply = progress.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    return f"The model says: {_text_of(reply)}"


@job
def test_input_required_result_list_roots(progress: Progress) -> str:
    """Ask for the client's roots, and list them."""
    roots = progress.roots(key="client_roots")
    return "Roots: " + ", ".join(str(root.uri) for root in roots)


@job
def test_input_required_result_request_state(progress: Progress) -> str:
    """Ask for a confirmation; the answer comes back with the sealed state."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = progress.ask_all({"confirm": Elicit("Please confirm", schema)})["confirm"]
    return f"state-ok: confirmed={answer['ok']}"


@job
def test_input_required_result_multiple_inputs(progress: Progress) -> str:
    """Ask three things at once: a name, a greeting from the model, the client's roots."""
    answers = progress.ask_all(
        {
            "user_name": Elicit("What is your name?", NAME_SCHEMA),
            "greeting": Sample("Generate a greeting", max_tokens=50),
            "client_roots": ListRoots(),
        }
    )
    roots = ", ".join(str(root.uri) for root in answers["client_roots"])
    return f"{_text_of(answers['greeting'])} {answers['user_name']['name']} (roots: {roots})"


@job
def test_input_required_result_multi_round(progress: Progress) -> str:
    """Ask two questions, one round each."""
    name = progress.ask_all({"step1": Elicit("Step 1: What is your name?", NAME_SCHEMA)})["step1"]["name"]
    color_schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    color = progress.ask_all({"step2": Elicit("Step 2: What is your favorite color?", color_schema)})["step2"]
    return f"{name} likes {color['color']}"


@job
def test_input_required_result_tampered_state(progress: Progress) -> str:
    """Ask for a name (the suite then sends the state back tampered with)."""
    answer = progress.ask_all({"user_name": Elicit("What is your name?", NAME_SCHEMA)})["user_name"]
    return f"Hello, {answer['name']}!"


@job
def test_input_required_result_capabilities(progress: Progress) -> str:
    """Ask only what the client can answer."""
    questions: dict[str, Question] = {}
    if progress.supports("elicitation"):
        questions["user_name"] = Elicit("What is your name?", NAME_SCHEMA)
    if progress.supports("sampling"):
        questions["greeting"] = Sample("Generate a greeting", max_tokens=50)
    if progress.supports("roots"):
        questions["client_roots"] = ListRoots()
    if not questions:
        return "The client can answer nothing, so nothing was asked."
    return f"Asked {', '.join(sorted(progress.ask_all(questions)))}"


@prompt
def test_input_required_result_prompt(ctx: Context) -> str | InputRequiredResult:
    """A prompt that asks the user for its context first (multi-round, served by the server)."""
    answer = (ctx.input_responses or {}).get("user_context")
    if not isinstance(answer, ElicitResult) or answer.action != "accept":
        schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
        return InputRequiredResult.model_validate(
            {
                "inputRequests": {
                    "user_context": {
                        "method": "elicitation/create",
                        "params": {"message": "What context should the prompt use?", "requestedSchema": schema},
                    }
                },
                "requestState": "prompt-round-1",
            }
        )
    return f"Use this context: {(answer.content or {}).get('context', '')}"


@prompt
def test_simple_prompt() -> str:
    """A prompt without arguments."""
    return "This is a simple prompt for testing."


@prompt
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@prompt
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    """A prompt that embeds a resource."""
    resource = TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        UserMessage(content=EmbeddedResource(type="resource", resource=resource)),
        UserMessage(content="Please process the embedded resource above."),
    ]


@prompt
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with an image."""
    image = ImageContent(type="image", data=base64.b64encode(RED_PIXEL_PNG).decode(), mime_type="image/png")
    return [UserMessage(content=image), UserMessage(content="Please analyze the image above.")]


@resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a 1x1 PNG)."""
    return RED_PIXEL_PNG


@resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> str:
    """A resource template: the data of `id`."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


def _outcome(progress: Progress, message: str, schema: dict[str, Any]) -> ElicitResult:
    result: ElicitResult = progress.ask_all({"answer": Elicit(message, schema, outcome=True)})["answer"]
    return result


def _completed(progress: Progress, message: str, schema: dict[str, Any]) -> str:
    result = _outcome(progress, message, schema)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content or {})}"


def _text_of(reply: CreateMessageResult) -> str:
    return reply.content.text if isinstance(reply.content, TextContent) else str(reply.content)


@job
def test_x_mcp_header(
    region: Annotated[
        str,
        Field(
            description="Routing region, mirrored into Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"}
        ),
    ],
) -> str:
    """Echo the region: a parameter mirrored into an HTTP header (SEP-2243)."""
    return f"region {region}"


@job(
    input_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": False,
    }
)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """Tool with JSON Schema 2020-12 features (published as written, not derived)."""
    return f"contact {name or 'someone'} by {contactMethod or 'email'}"


# The Tasks extension's fixtures (the suite's tasks-* scenarios).


@job(task="forbidden")
def greet(name: str) -> content.TextContent:
    """Greet `name` at once (never a task)."""
    return content.text(f"Hello, {name}!")


@job(task="optional")
def slow_compute(progress: Progress, seconds: Annotated[float, Field(ge=0, le=600)] = 1, label: str = "job") -> str:
    """Work for `seconds`, reporting each second; a task for clients that opt in."""
    steps = max(1, int(seconds))
    progress.set_total(steps, f"{label}: starting")
    for step in range(1, steps + 1):
        progress.sleep(seconds / steps)
        progress.report(step, f"{label}: {step}/{steps} s")
    return f"{label} computed for {seconds:g} s"


@job(task="required")
def failing_job(progress: Progress) -> str:
    """Run only as a task, and fail with a tool error."""
    progress.report(1, "about to fail", total=1)
    raise JobError("failing_job failed on purpose")


@job(task="optional")
def confirm_delete(progress: Progress, filename: str = "file.txt") -> str:
    """Ask before deleting `filename` (nothing is deleted: a fixture)."""
    schema = {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}
    answer = progress.ask_all({f"confirm-{progress.job_id}": Elicit(f"Delete {filename}?", schema)})
    confirmed = next(iter(answer.values()))["confirm"]
    return f"{filename} {'deleted' if confirmed else 'kept'}"


@job(task="optional")
def multi_input(progress: Progress) -> str:
    """Ask two things at once (a client may answer them one by one)."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    answers = progress.ask_all(
        {
            f"first-{progress.job_id}": Elicit("First value?", schema),
            f"second-{progress.job_id}": Elicit("Second value?", schema),
        }
    )
    return " and ".join(answer["name"] for answer in answers.values())


@job(task="required", asks_first=True)
def test_tool_with_task(progress: Progress) -> str:
    """Ask for a name on the call, then go on as a task."""
    answer = progress.ask_all({"user_name": Elicit("What is your name?", NAME_SCHEMA)})["user_name"]
    progress.report(1, "greeting", total=1)
    return f"Hello, {answer['name']}, from a task!"


@job(task="required")
def protocol_error_job() -> str:
    """Run only as a task, and end with a protocol (JSON-RPC) error rather than a tool error."""
    raise MCPError(INTERNAL_ERROR, "protocol_error_job raised a protocol error on purpose")
