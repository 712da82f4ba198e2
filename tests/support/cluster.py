"""A Redis Cluster of `masters` nodes on loopback, started by a test: `--cluster-enabled yes`
servers joined with `CLUSTER MEET` and given the 16384 slots in even ranges (`CLUSTER
ADDSLOTSRANGE`), which needs no `redis-cli` (the embedded Valkey ships none)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import redis

from mcp_jobs.server.dev_redis import RedisProcess, free_port, server_binary
from tests.support.processes import wait_until

SLOTS = 16384


@dataclass
class ClusterSet:
    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        """`MCP_JOBS_REDIS_URL` (the first node; the client finds the others from it)."""
        return self.nodes[0].url

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url, decode_responses=True)

    def ready(self) -> bool:
        """Every node sees the cluster as `ok`, with every slot served."""
        for node in self.nodes:
            client = redis.Redis(port=node.port, socket_timeout=1, decode_responses=True)
            try:
                info = client.execute_command("CLUSTER", "INFO")
            finally:
                client.close()
            text = info if isinstance(info, str) else str(info)
            if "cluster_state:ok" not in text or f"cluster_known_nodes:{len(self.nodes)}" not in text:
                return False
        return True


@contextmanager
def cluster_set(masters: int = 3) -> Iterator[ClusterSet]:
    """Start `masters` cluster nodes, join them and wait until the cluster serves every slot."""
    binary = server_binary(prefer_path=True)
    with ExitStack() as stack:
        bus_ports = [free_port() for _ in range(masters)]
        nodes = [
            stack.enter_context(
                RedisProcess(
                    binary,
                    # Its own bus port: the default (the port + 10000) is past 65535 for many free ports.
                    extra=("--cluster-enabled", "yes", "--cluster-port", str(bus), "--cluster-node-timeout", "2000"),
                )
            )
            for bus in bus_ports
        ]
        found = ClusterSet(nodes)
        share = SLOTS // masters
        for number, node in enumerate(nodes):
            client = redis.Redis(port=node.port, decode_responses=True)
            try:
                last = SLOTS - 1 if number == masters - 1 else (number + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", number * share, last)
                if number:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port, bus_ports[0])
            finally:
                client.close()
        wait_until(found.ready, 60, "the cluster nodes to meet and serve every slot")
        yield found
