"""A Redis Cluster of `masters` nodes on loopback, started by a test: `--cluster-enabled yes`
servers joined with `CLUSTER MEET` and given the 16384 slots in even ranges (`CLUSTER
ADDSLOTSRANGE`), which needs no `redis-cli` (the embedded Valkey ships none)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial

import redis

from mcp_jobs.server.dev_redis import RedisProcess, free_port, server_binary
from tests.support.processes import wait_until

SLOTS = 16384


@dataclass
class ClusterSet:
    nodes: list[RedisProcess]
    """The masters."""
    replicas: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """`MCP_JOBS_REDIS_URL` (the first node; the client finds the others from it)."""
        return self.nodes[0].url

    def replicas_in_sync(self) -> bool:
        for replica in self.replicas:
            client = redis.Redis(port=replica.port, socket_timeout=1, decode_responses=True)
            try:
                if client.info("replication").get("master_link_status") != "up":
                    return False
            finally:
                client.close()
        return True

    def ready(self) -> bool:
        """Every node sees the cluster as `ok`, with every slot served."""
        for node in [*self.nodes, *self.replicas]:
            client = redis.Redis(port=node.port, socket_timeout=1, decode_responses=True)
            try:
                info = client.execute_command("CLUSTER", "INFO")
            finally:
                client.close()
            text = info if isinstance(info, str) else str(info)
            known = len(self.nodes) + len(self.replicas)
            if "cluster_state:ok" not in text or f"cluster_known_nodes:{known}" not in text:
                return False
        return True


@contextmanager
def cluster_set(masters: int = 3, replicas: int = 0) -> Iterator[ClusterSet]:
    """Start `masters` cluster nodes (and `replicas` more, each replicating master 0, 1, ... in
    turn), join them and wait until the cluster serves every slot and every replica is in sync."""
    binary = server_binary(prefer_path=True)
    with ExitStack() as stack:
        bus_ports = [free_port() for _ in range(masters + replicas)]
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
        found = ClusterSet(nodes[:masters], nodes[masters:])
        share = SLOTS // masters
        for number, node in enumerate(nodes):
            client = redis.Redis(port=node.port, decode_responses=True)
            try:
                if number < masters:
                    last = SLOTS - 1 if number == masters - 1 else (number + 1) * share - 1
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", number * share, last)
                if number:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port, bus_ports[0])
            finally:
                client.close()
        wait_until(found.ready, 60, "the cluster nodes to meet and serve every slot")
        for number, replica in enumerate(found.replicas):
            master_id = _node_id(found.nodes[number % masters])
            # A node learns of the others through the bus: retry until it knows its master.
            wait_until(partial(_replicate, replica, master_id), 30, "a replica to take its master")
        wait_until(found.replicas_in_sync, 60, "the replicas to sync")
        yield found


def _node_id(node: RedisProcess) -> str:
    client = redis.Redis(port=node.port, decode_responses=True)
    try:
        return str(client.execute_command("CLUSTER", "MYID"))
    finally:
        client.close()


def _replicate(replica: RedisProcess, master_id: str) -> bool:
    client = redis.Redis(port=replica.port, decode_responses=True)
    try:
        client.execute_command("CLUSTER", "REPLICATE", master_id)
        return True
    except redis.ResponseError:
        return False
    finally:
        client.close()
