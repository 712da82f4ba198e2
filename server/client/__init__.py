"""`mcp-jobs call` and `mcp-jobs tools`: a terminal client for any MCP server.

It uses the MCP SDK's client and mcp-jobs' shared contract (`mcp_jobs._contract`) only: nothing
of the server core, Celery or Redis, so it starts as fast as the SDK client itself.

- `command`: connecting, running a call, the commands and their exit codes;
- `arguments`: the target (URL or stdio command) and `key=value` arguments;
- `view`: the progress display (a live bar, plain lines or JSON lines);
- `tasks`: the Tasks extension, client side (`--task`).
"""
