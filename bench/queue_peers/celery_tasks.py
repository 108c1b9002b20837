"""The Celery side of bench.queues: one no-op task on a Redis broker.

Run by ``celery -A celery_tasks worker`` and imported by ``client.py``, both
with ``bench/queue_peers`` on the path and the broker in ``BENCH_REDIS_URL``.
Late acks (after the task ran) give the same at-least-once contract as Skiff
and Dramatiq; results are not stored (nobody reads them).
"""

import os
import time

import redis
from celery import Celery

URL = os.environ["BENCH_REDIS_URL"]

app = Celery("bench_queues", broker=URL)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_client = None


def _redis():
    """One connection per worker process, opened after the prefork."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(URL)
    return _client


@app.task(name="noop")
def noop(i=None):
    started = time.time()
    if i is None:
        _redis().incr("done")
    else:
        _redis().hset("start", str(i), repr(started))
