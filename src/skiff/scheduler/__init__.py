"""Per-app instance pools and the autoscaling policy."""

from skiff.scheduler.invocation import Invocation
from skiff.scheduler.policy import InstanceView, Plan, PoolView, WarmWindow, plan, warm_minimum
from skiff.scheduler.pool import Pool, Served, Target

__all__ = ["InstanceView", "Invocation", "Plan", "Pool", "PoolView", "Served", "Target", "WarmWindow", "plan",
           "warm_minimum"]
