"""The operator dashboard at ``/_skiff/ui/``: server-rendered pages over the admin
API, with vendored htmx and uPlot (``static/vendor``, licenses beside them) and no
business logic of its own. Only the composition root mounts it (``mount``)."""

from skiff.dashboard.app import COOKIE, PREFIX, build_dashboard, mount

__all__ = ["COOKIE", "PREFIX", "build_dashboard", "mount"]
