"""The Flask tutorial's application-factory layout."""

from flask import Flask

CREATED = []


def create_app(test_config=None):
    app = Flask(__name__)
    CREATED.append(app)

    @app.route("/hello")
    def hello():
        return {"hello": "world", "apps_made": len(CREATED)}

    return app
