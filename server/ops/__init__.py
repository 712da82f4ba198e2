"""The operator views: jobs in flight, read straight from Redis.

- `view`: the rows (jobs and queues) both views show, from the snapshots;
- `command`: `mcp-jobs jobs`, a table in the terminal (`--watch` to follow it);
- `page`: the live jobs page (`/jobs`) and its event stream, which the HTTP app mounts.

They read the shared contract (`mcp_jobs._events`, `mcp_jobs._contract`) and never import the
server core, so they run beside any version of the server that writes the same snapshots.
"""
