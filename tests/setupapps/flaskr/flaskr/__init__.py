"""A small blog in the shape of Flask's tutorial: an app factory, an instance
folder (here the app's persistent data directory) holding the SQLite database,
and an ``init-db`` command run by the deploy's release step."""

import os
import secrets

from flask import Flask


def create_app(test_config=None):
    # the instance folder is where Flask apps keep their writable files
    app = Flask(__name__, instance_path=os.environ.get("SKIFF_DATA_DIR"),
                instance_relative_config=True)
    app.config.from_mapping(SECRET_KEY=os.environ.get("FLASKR_KEY") or secrets.token_hex(16),
                            DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"))
    if test_config is not None:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    from . import blog, db

    db.init_app(app)
    app.register_blueprint(blog.bp)
    return app
