"""The data plane's front: routing, static files, the admin API."""

from skiff.gateway.app import Gateway
from skiff.gateway.routing import Match, Route, Router

__all__ = ["Gateway", "Match", "Route", "Router"]
