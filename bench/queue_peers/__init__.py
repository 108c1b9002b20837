"""Peer workers of ``bench.queues`` (Celery and Dramatiq on Redis) and the load
generator every system is measured with. These files run in the peers'
environment (``bench/.peers/queues``), so they import nothing from Skiff."""
