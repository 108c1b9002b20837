import contextlib
import os

from flask import Blueprint, jsonify, request

from .db import get_db

bp = Blueprint("blog", __name__)


@bp.get("/")
def index():
    posts = get_db().execute("SELECT id, title, body FROM post ORDER BY id").fetchall()
    return jsonify([dict(p) for p in posts])


@bp.post("/create")
def create():
    db = get_db()
    cur = db.execute("INSERT INTO post (title, body) VALUES (?, ?)",
                     (request.form["title"], request.form.get("body", "")))
    db.commit()
    return jsonify({"id": cur.lastrowid}), 201


@bp.get("/where")
def where():
    """Where the app may write: its data directory yes, its code no."""
    out = {"data_dir": os.environ.get("SKIFF_DATA_DIR")}
    for name, path in (("code", os.path.join(os.path.dirname(__file__), "x")),
                       ("data", os.path.join(os.environ["SKIFF_DATA_DIR"], "x"))):
        try:
            with open(path, "w") as f:
                f.write("x")
            out[name] = "written"
        except OSError as exc:
            out[name] = exc.strerror
    return jsonify(out)


@bp.post("/fill")
def fill():
    """Write MiB until the quota stops it."""
    written = 0
    try:
        with open(os.path.join(os.environ["SKIFF_DATA_DIR"], "big"), "wb") as f:
            for _ in range(int(request.args.get("mb", "64"))):
                f.write(b"\0" * (1 << 20))
                f.flush()
                written += 1
        return jsonify({"written_mb": written})
    except OSError as exc:
        return jsonify({"written_mb": written, "error": exc.strerror}), 507
    finally:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(os.environ["SKIFF_DATA_DIR"], "big"))
