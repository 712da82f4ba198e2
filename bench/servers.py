"""Jobs/s through one and two server processes behind a round-robin balancer (same workers).

    python -m bench.servers [--jobs N]

Server replicas share nothing but Redis, so jobs/s should grow with them until the workers, Redis
or the machine's cores are the bottleneck; the run says which by also measuring bare Celery on the
same workers. On a 2-core machine everything (client, balancer, servers, workers, Redis) shares
the cores, so the figure is a floor.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from bench.stack import bench_stack
from bench.throughput import calls_per_second
from mcp_jobs.server.dev_redis import free_port
from tests.support.processes import ManagedProcess, start_http_server


def jobs_per_second(jobs: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    with bench_stack(workers=2, concurrency=2) as stack:
        port = free_port()
        second = start_http_server(stack.env, port)
        first_port = int(stack.url.rsplit(":", 1)[1].split("/")[0])
        try:
            rates["1 server"] = anyio.run(calls_per_second, stack.url, "noop", jobs)
            for label, backends in [("1 server, balanced", [first_port]), ("2 servers, balanced", [first_port, port])]:
                listen = free_port()
                args = [sys.executable, "-m", "bench.balancer", str(listen), *map(str, backends)]
                balancer = ManagedProcess("balancer", args, stack.env)
                try:
                    balancer.wait_for_line("balancing", timeout=10)
                    rates[label] = anyio.run(calls_per_second, f"http://127.0.0.1:{listen}/mcp", "noop", jobs)
                finally:
                    balancer.stop()
        finally:
            second.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=600)
    args = parser.parse_args()
    rates = jobs_per_second(args.jobs)
    print(f"no-op jobs/s, {args.jobs} jobs, 2 workers x 2 processes, {os.cpu_count()} cores")
    for label, rate in rates.items():
        print(f"{label:>20}: {rate:7.1f} jobs/s  ({rate / rates['1 server']:.2f}x)")


if __name__ == "__main__":
    main()
