"""The per-caller limit on a Redis Cluster: admission as a step of its own, on the caller's key.

On one Redis (and with Sentinel) the script that writes a job's first snapshot counts the
caller's live jobs itself, reading their snapshots and liveness keys (`_store.WRITE_SCRIPT`). On
a cluster a script reaches its own slot only, and each job lives on its own. There:

1. the job's first snapshot is written, as any other (nobody knows its id yet);
2. `CallerJobs.admit` reads the caller's set and, in one pipeline, each member's state and
   liveness key; the ended, the vanished and the queued-but-cancelled leave the set, as the
   script would drop them;
3. `ADMIT_SCRIPT`, on the caller's key alone, adds the job unless the set already holds `limit`
   members that count (those read as running without a heartbeat are named to it: they stay,
   uncounted, as in the script);
4. at the limit (or when admission fails), the job's snapshot is deleted: it was never queued,
   and nobody was told its id (only a scan of the keys could have seen it meanwhile).

The limit holds as on one Redis: members join only in step 3, atomically against each other, and
a member enters the set after its snapshot exists, so step 2 never drops a job being admitted.
What step 2 reads may be stale only towards counting a job that just ended (one call refused that
a moment later would pass), never towards admitting one too many.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from mcp_jobs._events import TERMINAL_STATES, JobState, Keys, as_text

ADMIT_SCRIPT = """
-- KEYS[1]: a caller's set of jobs. ARGV: the job key to add, the limit, the set's TTL, then the
-- members that stay uncounted (running, with no heartbeat). Returns {1} when added, else {0, live}.
local uncounted = 0
for i = 4, #ARGV do
  uncounted = uncounted + redis.call('SISMEMBER', KEYS[1], ARGV[i])
end
local live = redis.call('SCARD', KEYS[1]) - uncounted
if live >= tonumber(ARGV[2]) then
  return {0, live}
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1}
"""


class CallerJobs:
    """Admission of new jobs against the caller's limit, on a Redis Cluster (see the module doc)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, ttl: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._admit = client.register_script(ADMIT_SCRIPT)

    async def admit(self, caller: str, limit: int, job_id: str) -> int | None:
        """Add the job (its snapshot written) to the caller's live jobs: None when admitted, else
        how many live jobs the caller has (the caller then deletes the job's snapshot: step 4)."""
        key = self._keys.caller_jobs(caller)
        members = [as_text(member) for member in await self._client.smembers(key)]
        uncounted: list[str] = []
        if members:
            pipe = self._client.pipeline(transaction=False)
            for member in members:
                pipe.hmget(member, ["state", "cancel"])
                pipe.exists(f"{member}:alive")
            replies = await pipe.execute()
            ended = []
            for member, (state, cancel), alive in zip(members, replies[::2], replies[1::2]):
                match _standing(state, cancel, bool(alive)):
                    case "ended":
                        ended.append(member)
                    case "uncounted":
                        uncounted.append(member)
            if ended:
                await self._client.srem(key, *ended)
        job = self._keys.job(job_id)
        reply: list[Any] = await self._admit(keys=[key], args=[job, limit, self._ttl, *uncounted])
        return None if int(reply[0]) == 1 else int(reply[1])


def _standing(state: bytes | str | None, cancel: bytes | str | None, alive: bool) -> str:
    """How a member of a caller's set stands: "ended" (it leaves), "uncounted" (running with no
    heartbeat: it stays, not counted) or "live"."""
    if state is None or as_text(state) in TERMINAL_STATES:
        return "ended"
    if as_text(state) == JobState.QUEUED.value and cancel is not None and as_text(cancel) == "1":
        return "ended"
    if as_text(state) == JobState.RUNNING.value and not alive:
        return "uncounted"
    return "live"
