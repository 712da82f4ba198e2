"""The baseline publisher: `count` time-stamped messages on a Redis channel, `interval` s apart.

python -m bench.raw_publisher <redis-url> <channel> <count> <interval>
"""

from __future__ import annotations

import sys
import time

import redis


def main() -> None:
    url, channel, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    client = redis.Redis.from_url(url)
    while client.pubsub_numsub(channel)[0][1] == 0:  # wait for the subscriber
        time.sleep(0.01)
    next_at = time.monotonic()
    for _ in range(count):
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        client.publish(channel, repr(time.time()))
    client.publish(channel, b"end")


if __name__ == "__main__":
    main()
