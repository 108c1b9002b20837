"""Instance processes: zygotes that fork them, the IPC protocol, supervision."""

from skiff.instance.supervisor import Instance, Launcher, ZygoteSpec

__all__ = ["Instance", "Launcher", "ZygoteSpec"]
