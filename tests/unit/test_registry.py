"""`@job` turns a typed function into a tool definition; settings read the environment."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from mcp_jobs import Progress, Settings, content, job
from mcp_jobs.registry import build_spec, load_jobs


class Out(BaseModel):
    total: int


def sample(progress: Progress, items: list[str], limit: int = 3) -> Out:
    """Count items.

    More words here.
    """
    return Out(total=len(items[:limit]))


def test_signature_docstring_and_return_become_the_tool_definition() -> None:
    spec = build_spec(sample, time_limit=30, queue="slow", retry_safe=True)
    schema = spec.input_schema
    assert spec.name == "sample" and spec.progress_param == "progress"
    assert set(schema["properties"]) == {"items", "limit"}, "the Progress parameter is not an argument"
    assert schema["required"] == ["items"]
    assert spec.description == "Count items.\n\nMore words here."
    assert spec.metadata.output_schema is not None and "total" in spec.metadata.output_schema["properties"]
    assert (spec.time_limit, spec.queue, spec.retry_safe, spec.is_async) == (30, "slow", True, False)
    assert spec.validate_arguments({"items": ["a"]}) == {"items": ["a"], "limit": 3}


def test_options_and_errors() -> None:
    async def quiet(x: int) -> int:
        return x

    spec = build_spec(quiet, name="renamed", description="Explicit.")
    assert (spec.name, spec.description, spec.progress_param, spec.is_async) == ("renamed", "Explicit.", None, True)
    with pytest.raises(ValueError):
        build_spec(quiet, time_limit=0)


def test_a_second_job_with_the_same_name_is_refused() -> None:
    def one() -> int:
        return 1

    def two() -> int:
        return 2

    job(name="twin_for_test")(one)
    job(name="twin_for_test")(one)  # re-registering the same function is harmless (module reloads)
    with pytest.raises(ValueError, match="already registered"):
        job(name="twin_for_test")(two)


def test_example_jobs_are_registered() -> None:
    jobs = load_jobs(["mcp_jobs.examples"])
    assert {"sleep_steps", "process_documents", "search_logs", "count_primes"} <= set(jobs)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_JOBS_JOB_MODULES", "a.jobs, b.jobs")
    monkeypatch.setenv("MCP_JOBS_ALLOWED_HOSTS", '["mcp.example.com"]')
    monkeypatch.setenv("MCP_JOBS_REDIS_URL", "redis://redis:6379/1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.job_modules == ["a.jobs", "b.jobs"]
    assert settings.allowed_hosts == ["mcp.example.com"]
    assert settings.effective_broker_url == "redis://redis:6379/1"
    assert settings.host == "127.0.0.1", "bind to localhost unless told otherwise"


def test_a_header_mirrored_parameter_must_be_valid() -> None:
    def routed(tenant: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Tenant"})]) -> str:
        return tenant

    def bad(ratio: Annotated[float, Field(json_schema_extra={"x-mcp-header": "Ratio"})]) -> float:
        return ratio

    assert build_spec(routed).input_schema["properties"]["tenant"]["x-mcp-header"] == "Tenant"
    with pytest.raises(ValueError, match="invalid x-mcp-header"):
        build_spec(bad)


def test_content_returns_are_detected_and_round_trip() -> None:
    def chart() -> list[content.TextContent | content.Image]:
        return [content.text("hi"), content.Image(data=b"\x89PNG", format="png")]

    spec = build_spec(chart)
    assert spec.returns_content and spec.metadata.output_schema is None
    stored = spec.encode_result(chart())
    assert stored == [{"type": "text", "text": "hi"}, {"type": "image", "data": "iVBORw==", "mimeType": "image/png"}]
    assert [block.type for block in spec.tool_result(stored).content] == ["text", "image"]
    assert not build_spec(sample).returns_content


def test_a_structured_job_cannot_send_an_oversized_result_by_link() -> None:
    from mcp_jobs.registry import build_spec

    def numbers() -> list[int]:
        return []

    with pytest.raises(ValueError, match="oversized='artifacts' needs a job that returns content"):
        build_spec(numbers, oversized="artifacts")
