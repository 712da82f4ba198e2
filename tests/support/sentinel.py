"""A Redis master, a replica and three sentinels on loopback, started by a test (and a failover
it can force by killing the master)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from mcp_jobs.server.dev_redis import RedisProcess, free_port, server_binary
from tests.support.processes import wait_until

MASTER_NAME = "jobs-master"
DOWN_AFTER_MS = 1000
"""How long the sentinels wait before they call the master down (the failover starts then)."""


@dataclass
class SentinelSet:
    master: RedisProcess
    replica: RedisProcess
    sentinel_ports: list[int]
    _sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def nodes(self) -> str:
        """`MCP_JOBS_REDIS_SENTINELS`."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
                address = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                client.close()
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def replica_in_sync(self) -> bool:
        client = redis.Redis(port=self.replica.port, socket_timeout=1, decode_responses=True)
        try:
            return client.info("replication").get("master_link_status") == "up"
        finally:
            client.close()

    def sentinels_agree(self) -> bool:
        """Every sentinel knows the replica and the other sentinels (ready for a failover)."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
            try:
                master = client.execute_command("SENTINEL", "master", MASTER_NAME)
                info = dict(zip(master[::2], master[1::2])) if isinstance(master, list) else master
                if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                    return False
            finally:
                client.close()
        return True

    def kill_master(self) -> None:
        """SIGKILL the master: no goodbye to its clients, as when its machine dies."""
        assert self.master.process is not None
        self.master.process.kill()
        self.master.process.wait()


@contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    """Start the set and wait until the sentinels know the replica and each other."""
    binary = server_binary(prefer_path=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mcp-jobs-sentinel-") as folder:
        master = stack.enter_context(RedisProcess(binary))
        replica = stack.enter_context(RedisProcess(binary, extra=("--replicaof", "127.0.0.1", str(master.port))))
        ports = [free_port() for _ in range(3)]
        found = SentinelSet(master, replica, ports)
        for port in ports:
            conf = Path(folder) / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {folder}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            process = subprocess.Popen(
                [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            found._sentinels.append(process)
            stack.callback(_stop, process)
        wait_until(found.replica_in_sync, 30, "the replica to sync")
        wait_until(found.sentinels_agree, 60, "the sentinels to find the replica and each other")
        yield found


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
