"""The Dramatiq side of bench.queues: one no-op actor on a Redis broker.

Run by ``dramatiq dramatiq_tasks`` and imported by ``client.py``, both with
``bench/queue_peers`` on the path and the broker in ``BENCH_REDIS_URL``.
Dramatiq acks after the actor ran (at least once), like Skiff.
"""

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ["BENCH_REDIS_URL"]

dramatiq.set_broker(RedisBroker(url=URL))

_client = None


def _redis():
    """One connection per worker process (opened in the worker, not at import)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(URL)
    return _client


@dramatiq.actor(queue_name="bench", max_retries=3)
def noop(i=None):
    started = time.time()
    if i is None:
        _redis().incr("done")
    else:
        _redis().hset("start", str(i), repr(started))
