"""What the platform does when an instance logs, calls skiff.sdk or dies."""

from __future__ import annotations

from skiff import ipc as p
from skiff.instance import Instance, InstanceHooks
from skiff.observe import Observe
from skiff.platform.logsink import LogSink
from skiff.platform.sdkcalls import SdkCalls


class PlatformHooks(InstanceHooks):
    def __init__(self, logs: LogSink, sdk: SdkCalls, observe: Observe | None = None) -> None:
        self._logs = logs
        self._sdk = sdk
        self._observe = observe if observe is not None else Observe()

    def after_log(self, inst: Instance, log: p.Log) -> None:
        self._logs.instance_line(inst, log)

    async def after_call(self, inst: Instance, call: p.Call) -> p.CallResult | None:
        rid = call.request_id
        return await self._sdk.answer(inst.app, call, traced=bool(rid) and inst.handling(rid))

    def after_death(self, inst: Instance) -> None:
        if inst.app:  # a spare that never ran an app has nothing to log
            self._logs.instance_died(inst)
            reason = inst.exit_reason.code if inst.exit_reason else "exited"
            if inst.draining and reason == "instance_crashed":
                reason = "stopped"  # asked to (idle or replaced), as the log line says
            self._observe.after_exit(inst.app, reason)
