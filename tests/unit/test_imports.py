"""The import rules of `mcp_jobs`, checked on the source (after import-linter's layers contracts).

What loading a module loads is its module-level imports and theirs, transitively (imports inside
functions run only when the function does, and `if TYPE_CHECKING:` blocks never do). The rules:

- the server core (the modules directly in `mcp_jobs.server`) uses the job registry and the
  shared contract, never the worker runtime (`celery_app`, `_runner`, the worker side of
  fan-out), the client or the CLI;
- the client (`mcp_jobs.server.client`) loads nothing of mcp-jobs but the shared contract;
- the operator views (`mcp_jobs.server.ops`) never load the server core, the client or the runtime;
- `mcp_jobs.server.cli`, the one place that composes, loads none of them until a command runs.

`test_a_broken_rule_is_caught` feeds the checker a graph with one bad edge added, so the check
itself is known to fail when a rule is broken.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"mcp_jobs": REPO / "workers", "mcp_jobs.server": REPO / "server"}

RUNTIME = {"mcp_jobs.celery_app", "mcp_jobs._runner", "mcp_jobs.fanout"}
CONTRACT = {
    "mcp_jobs",
    "mcp_jobs._contract",
    "mcp_jobs._events",
    "mcp_jobs._text",
    "mcp_jobs.tracing",
    "mcp_jobs.server",
}
"""The shared contract (with `tracing`, which every side uses and which loads nothing of mcp-jobs), and
the two package `__init__`s (which load nothing until asked: PEP 562)."""

Graph = dict[str, set[str]]


def modules() -> dict[str, Path]:
    """Every module of the package, by its import name."""
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "mcp_jobs" and parts[0] != "__init__" and (folder / parts[0]).is_dir():
                continue  # workers/ has no subpackages; guard against a stray folder
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is loaded: not in functions, not under TYPE_CHECKING."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def import_graph() -> Graph:
    """Module -> the mcp_jobs modules its loading loads directly (parent packages included)."""
    known = modules()
    graph: Graph = {}
    for name, path in known.items():
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [f"{node.module}.{alias.name}" for alias in node.names] + [node.module or ""]
            )
            for target in targets:
                if target in known:
                    edges.add(target)
                    edges.update(parent for parent in _parents(target) if parent in known)
        edges.update(parent for parent in _parents(name) if parent in known)
        edges.discard(name)
        graph[name] = edges
    return graph


def loads(graph: Graph, start: str) -> set[str]:
    """Everything loading `start` loads, transitively."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), set()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@dataclass(frozen=True)
class Broken:
    module: str
    loads: str
    rule: str


def _group(name: str) -> str:
    if name.startswith("mcp_jobs.server.client"):
        return "client"
    if name.startswith("mcp_jobs.server.ops"):
        return "ops"
    if name in ("mcp_jobs.server.cli", "mcp_jobs.server.commands", "mcp_jobs.server.__main__"):
        return "cli"
    if name.startswith("mcp_jobs.server.") and name != "mcp_jobs.server.dev_redis":
        return "core"
    return "other"


def broken_rules(graph: Graph) -> list[Broken]:
    found = []
    for name in sorted(graph):
        group = _group(name)
        for target in sorted(loads(graph, name)):
            rule = None
            if group == "core" and (target in RUNTIME or _group(target) in ("client", "cli")):
                rule = "the server core never loads the worker runtime, the client or the CLI"
            elif group == "client" and not (target in CONTRACT or _group(target) == "client"):
                rule = "the client loads only the shared contract"
            elif group == "ops" and (target in RUNTIME or _group(target) in ("core", "client", "cli")):
                rule = "the operator views never load the server core, the client or the runtime"
            elif name == "mcp_jobs.server.cli" and target not in CONTRACT:
                rule = "the CLI loads each command only when it runs"
            if rule:
                found.append(Broken(name, target, rule))
    return found


def test_imports_point_down() -> None:
    graph = import_graph()
    assert {"mcp_jobs.server.dispatch", "mcp_jobs.server.client.command", "mcp_jobs.server.ops.page"} <= set(graph)
    assert broken_rules(graph) == []


def test_a_broken_rule_is_caught() -> None:
    for module, bad in [
        ("mcp_jobs.server.follow", "mcp_jobs.celery_app"),
        ("mcp_jobs.server.client.view", "mcp_jobs.settings"),
        ("mcp_jobs.server.ops.view", "mcp_jobs.server.tasks"),
        ("mcp_jobs.server.cli", "mcp_jobs.server.client.command"),
    ]:
        graph = import_graph()
        graph[module] = graph[module] | {bad}
        assert any(b.module == module and b.loads == bad for b in broken_rules(graph)), (module, bad)


def test_the_graph_follows_what_python_loads() -> None:
    graph = import_graph()
    # Through `registry` -> `progress`: fan-out's worker side is imported inside `Progress.map` only.
    assert "mcp_jobs.registry" in loads(graph, "mcp_jobs.server.dispatch")
    assert "mcp_jobs.fanout" not in loads(graph, "mcp_jobs.registry")
    assert "mcp_jobs.fanout" in loads(graph, "mcp_jobs.celery_app")
