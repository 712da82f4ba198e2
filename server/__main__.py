"""`python -m mcp_jobs.server`: the `mcp-jobs` command."""

from mcp_jobs.server.cli import main

if __name__ == "__main__":
    main()
