"""What the owner of instances hears from them, as one object passed to the
``Launcher`` (Dramatiq's middleware shape): each hook does nothing by default,
and the platform passes its subclass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff import ipc as p

if TYPE_CHECKING:
    from skiff.instance.supervisor import Instance


class InstanceHooks:
    def after_log(self, inst: Instance, log: p.Log) -> None:
        """A line the instance wrote (nothing in it is trusted)."""

    async def after_call(self, inst: Instance, call: p.Call) -> p.CallResult | None:
        """A skiff.sdk call from the instance: the answer, or None if none is served."""
        return None

    def after_death(self, inst: Instance) -> None:
        """The instance is gone (the kernel says so): the last thing it does."""
