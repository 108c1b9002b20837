"""Instance processes: zygotes that fork them, the IPC protocol, supervision."""

from skiff.instance.hooks import InstanceHooks
from skiff.instance.supervisor import Instance, Launcher, ZygoteSpec

__all__ = ["Instance", "InstanceHooks", "Launcher", "ZygoteSpec"]
