"""What the platform does when an instance logs, calls skiff.sdk or dies."""

from __future__ import annotations

from skiff import ipc as p
from skiff.instance import Instance, InstanceHooks
from skiff.platform.logsink import LogSink
from skiff.platform.sdkcalls import SdkCalls


class PlatformHooks(InstanceHooks):
    def __init__(self, logs: LogSink, sdk: SdkCalls) -> None:
        self._logs = logs
        self._sdk = sdk

    def after_log(self, inst: Instance, log: p.Log) -> None:
        self._logs.instance_line(inst, log)

    async def after_call(self, inst: Instance, call: p.Call) -> p.CallResult | None:
        return await self._sdk.answer(inst.app, call)

    def after_death(self, inst: Instance) -> None:
        if inst.app:  # a spare that never ran an app has nothing to log
            self._logs.instance_died(inst)
