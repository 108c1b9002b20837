"""The platform side of ``skiff.sdk``: each call answered for the app whose
instance made it, in that app's fair share of the SDK threads."""

from __future__ import annotations

import asyncio
import concurrent.futures

from skiff import ipc as p
from skiff.errors import SkiffError
from skiff.sdk.services import Services

# skiff.sdk calls run on threads (SQLite blocks). One FIFO for every app let a flood of
# 100,000 calls from one app hold another app's KV call for 25 s (2.4 ms before). So each
# app runs at most this many calls at once and the rest wait in its own queue: another
# app's call waits behind at most this many of the flooder's.
SDK_CALLS_PER_APP = 4
# threads for those calls, their own (not asyncio's default executor, which deploys use
# for scans and installs that take minutes): room for four apps at their cap at once
SDK_THREADS = 4 * SDK_CALLS_PER_APP


class SdkCalls:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=SDK_THREADS, thread_name_prefix="skiff-sdk")
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def answer(self, app: str, call: p.Call) -> p.CallResult:
        slots = self._slots.get(app)
        if slots is None:
            slots = self._slots[app] = asyncio.Semaphore(SDK_CALLS_PER_APP)
        try:
            async with slots:  # FIFO: the app's calls queue here, not in the shared threads
                value = await asyncio.get_running_loop().run_in_executor(
                    self._threads, self._services.call, app, call.op, call.args)
        except SkiffError as exc:
            return p.CallResult(id=call.id, ok=False, code=exc.code, message=exc.message,
                                status=exc.status)
        except (TypeError, ValueError) as exc:
            return p.CallResult(id=call.id, ok=False, code="bad_call", message=str(exc),
                                status=400)
        return p.CallResult(id=call.id, value=value)

    def forget(self, app: str) -> None:
        self._slots.pop(app, None)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
