"""guestbook-flask: a guestbook, as an ordinary Flask app.

Nothing here knows about Skiff. Skiff mounts the app with ``SCRIPT_NAME`` set
to ``/guestbook-flask``, so ``url_for`` builds links and redirects that work
under the mount and on ``guestbook-flask.localhost`` without any change.

    GET  /               the page: entries and a form
    POST /sign           the form's target; redirects back to the page
    GET  /api/entries    the entries as JSON, newest first
    POST /api/entries    sign from a script: {"name": "...", "message": "..."}

Entries live in memory (the newest ``MAX_ENTRIES``) and are lost when the
instance scales to zero; a later Skiff release adds a KV store for this.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from flask import Flask, jsonify, redirect, render_template, request, url_for

MAX_ENTRIES = 100
MAX_NAME = 40
MAX_MESSAGE = 500

app = Flask(__name__)

# deque.appendleft is atomic, so threaded WSGI servers need no lock here.
entries: deque[dict[str, str]] = deque(maxlen=MAX_ENTRIES)


@app.get("/")
def index() -> str:
    return render_template("index.html", entries=entries, error=None, form={})


@app.post("/sign")
def sign() -> Any:
    try:
        _add_entry(request.form)
    except ValueError as error:
        page = render_template("index.html", entries=entries, error=str(error), form=request.form)
        return page, 400
    # Post/redirect/get, so reloading the page does not sign twice.
    return redirect(url_for("index"), code=303)


@app.get("/api/entries")
def list_entries() -> Any:
    return jsonify(entries=list(entries))


@app.post("/api/entries")
def create_entry() -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return _json_error('body must be a JSON object like {"name": "...", "message": "..."}')
    try:
        entry = _add_entry(data)
    except ValueError as error:
        return _json_error(str(error))
    return jsonify(entry), 201, {"Location": url_for("list_entries")}


def _add_entry(data: Any) -> dict[str, str]:
    """Validate a submission and keep it; raise ValueError saying what is wrong."""
    name = _text(data, "name", MAX_NAME)
    message = _text(data, "message", MAX_MESSAGE)
    entry = {
        "name": name,
        "message": message,
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    entries.appendleft(entry)
    return entry


def _text(data: Any, field: str, limit: int) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} is required")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{field} must be at most {limit} characters")
    return value


def _json_error(message: str, status: int = 400) -> Any:
    return jsonify(error={"code": "invalid_entry", "message": message}), status
