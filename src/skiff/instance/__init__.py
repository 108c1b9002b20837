"""Instance processes: zygotes that fork them, the IPC protocol, supervision."""

from skiff.instance.hooks import InstanceHooks
from skiff.instance.supervisor import Instance, Launcher, Stream, ZygoteSpec
from skiff.instance.websocket import WebSocket

__all__ = ["Instance", "InstanceHooks", "Launcher", "Stream", "WebSocket", "ZygoteSpec"]
