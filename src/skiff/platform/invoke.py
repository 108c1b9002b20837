"""The invoke path: one :class:`Invocation` to the app's pool, recorded whatever
its outcome."""

from __future__ import annotations

import time

from skiff import ipc as p
from skiff.errors import InvocationError, NotFound, SkiffError
from skiff.platform.logsink import LogSink
from skiff.platform.registry import App, Registry
from skiff.scheduler import Invocation, Served
from skiff.store import Invocation as InvocationRecord
from skiff.store import Store

#: Failures whose message is the app's own words (what it raised or returned),
#: logged on its stderr; the others are the platform's and have their own lines.
_APP_WORDS = frozenset({"handler_error", "bad_result", "not_supported"})


class Invoker:
    def __init__(self, registry: Registry, store: Store, logs: LogSink) -> None:
        self._registry = registry
        self._store = store
        self._logs = logs

    async def __call__(self, inv: Invocation) -> p.Response:
        return await self.invoke(self._registry.get(inv.app), inv)

    async def invoke(self, app: App, inv: Invocation) -> p.Response:
        """Run one invocation of ``app`` and record it, whatever its outcome."""
        if app.pool is None:
            raise NotFound(f"app {app.name} serves only static files", code="route_not_found")
        t0 = time.perf_counter()
        served: Served | None = None
        status, error, detail = 500, None, ""
        try:
            resp, served = await app.pool.invoke(inv.request)
            status = resp.status
            return resp
        except SkiffError as exc:
            status, error = exc.status, exc.code
            if isinstance(exc, InvocationError):  # the caller is told less: the log has it
                detail = str(exc.details.get("traceback") or "").rstrip() or (
                    exc.message if exc.code in _APP_WORDS else "")
            raise
        finally:
            elapsed = (time.perf_counter() - t0) * 1000
            queued = served.queued_ms if served else 0.0
            record = InvocationRecord(
                id=inv.id, app=app.name, revision=served.revision if served else app.revision,
                instance=served.instance if served else "", trigger=inv.trigger,
                cold=served.cold if served else False, init_ms=served.init_ms if served else 0.0,
                duration_ms=max(0.0, elapsed - queued), queued_ms=queued,
                memory_mb=app.manifest.spec.resources.memory_mb, status=status, error=error,
                ts=time.time())
            self._store.record(record)
            if error:  # the invocation record has the rest; a log line per request cost
                # a third of the gateway's time in SQLite writes (profiled)
                self._logs.platform(app.name, record.revision, f"request failed: {error} "
                                    f"(status {status}, {record.duration_ms:.2f} ms)",
                                    request_id=inv.id, instance=record.instance)
                if detail:
                    self._logs.failure_text(app.name, record.revision, detail,
                                            request_id=inv.id, instance=record.instance)
