"""The `skiff` command: thin commands over the admin API and the server."""

from skiff.cli.app import app, main

__all__ = ["app", "main"]
