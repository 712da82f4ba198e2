"""How long `mcp-jobs call` takes to start, against the MCP SDK client's own import.

    python -m bench.startup [--turns 15]

A client for any MCP server should cost about what the SDK client costs to load (target: within
1.25x, medians). Each turn runs, one after the other in fresh interpreters, `mcp-jobs call --help`
and `python -c "from mcp import Client"`, so the machine's drift hits both alike; the medians and
their ratio are printed, and which heavy libraries the command loaded (none of Celery, kombu,
PyJWT or prometheus-client should be).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bench.measure import Row, table

CALL_HELP = [sys.executable, "-m", "mcp_jobs.server.cli", "call", "--help"]
SDK_IMPORT = [sys.executable, "-c", "from mcp import Client"]
HEAVY = ("celery", "kombu", "jwt", "prometheus_client", "redis")
PROBE = (
    "import sys\nfrom mcp_jobs.server.cli import main\ntry:\n    main(['call', '--help'])\n"
    "except SystemExit:\n    pass\n"
    f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
)


def _seconds(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def loaded_heavy_modules() -> list[str]:
    """The heavy libraries `mcp-jobs call --help` loads (its help text goes to a pipe here)."""
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    return [name for name in out.rstrip("\n").splitlines()[-1].removeprefix("loaded:").split(",") if name]


def call_startup(quick: bool, turns: int | None = None) -> list[Row]:
    turns = turns or (7 if quick else 15)
    _seconds(CALL_HELP), _seconds(SDK_IMPORT)  # warm the file cache for both
    call, sdk = [], []
    for _ in range(turns):
        call.append(_seconds(CALL_HELP))
        sdk.append(_seconds(SDK_IMPORT))
    heavy = loaded_heavy_modules()
    return [
        Row(
            "client startup",
            "`mcp-jobs call --help`, median of turns",
            statistics.median(call) * 1000,
            "ms",
            baseline=statistics.median(sdk) * 1000,
            target="<= 1.25x the SDK client's import",
            note=f"{turns} turns; heavy modules loaded: {', '.join(heavy) or 'none'}",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=15)
    args = parser.parse_args()
    print(table(call_startup(False, args.turns)))


if __name__ == "__main__":
    main()
