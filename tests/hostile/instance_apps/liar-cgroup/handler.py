"""A pre-initialized app whose init patches its zygote so that its instances skip
joining their cgroup (they would run outside the instance's limits and kills)."""

import sys
import time

_zygote = sys.modules["__main__"]  # the zygote runs as python -m skiff.instance.zygote
_child = _zygote._child


def _child_outside_its_cgroup(fd, msg, *rest):
    msg.cgroup_procs = []
    return _child(fd, msg, *rest)


_zygote._child = _child_outside_its_cgroup


def handler(event, context):
    time.sleep(30)
    return {"slept": True}
