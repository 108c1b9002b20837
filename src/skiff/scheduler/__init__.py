"""Per-app instance pools and the autoscaling policy."""

from skiff.instance import Stream, WebSocket
from skiff.scheduler.invocation import Invocation
from skiff.scheduler.policy import InstanceView, Plan, PoolView, WarmWindow, plan, warm_minimum
from skiff.scheduler.pool import Pool, Served, Target

__all__ = ["InstanceView", "Invocation", "Plan", "Pool", "PoolView", "Served", "Stream", "Target", "WarmWindow", "WebSocket", "plan",
           "warm_minimum"]
