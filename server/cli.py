"""The `mcp-jobs` command line, composed from the packages that own each command.

This is the one module that brings the server core, the client and the operator views together,
and it imports none of them until a command runs: `mcp-jobs call --help` loads the client alone,
not Celery, the server or the Redis views.
"""

from __future__ import annotations

from importlib import import_module

import click

COMMANDS = {
    "serve": ("mcp_jobs.server.commands", "serve"),
    "worker": ("mcp_jobs.server.commands", "worker"),
    "dev": ("mcp_jobs.server.commands", "dev"),
    "token": ("mcp_jobs.server.commands", "token"),
    "call": ("mcp_jobs.server.client.command", "call"),
    "tools": ("mcp_jobs.server.client.command", "tools"),
    "jobs": ("mcp_jobs.server.ops.command", "jobs"),
}
"""Each subcommand: the module that defines it and the command's name there."""


class LazyGroup(click.Group):
    """A group whose subcommands are imported when they are looked up (the pattern of click's docs)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name]
        command = getattr(import_module(module), name)
        assert isinstance(command, click.Command), f"{module}.{name} is not a click command"
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="mcp-jobs")
def main() -> None:
    """Run long MCP tool calls as Celery jobs with live progress."""


if __name__ == "__main__":
    main()
