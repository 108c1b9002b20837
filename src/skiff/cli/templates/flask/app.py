"""__APP_NAME__: a Flask app.

Skiff runs it as WSGI with ``SCRIPT_NAME`` set to where it is mounted
(``/__APP_NAME__``). Build links with ``url_for`` (never hard-code ``/...``)
and they stay right under the mount.
"""

from flask import Flask, jsonify, render_template_string

app = Flask(__name__)

PAGE = """<!doctype html>
<title>__APP_NAME__</title>
<h1>__APP_NAME__</h1>
<p>Try <a href="{{ url_for('hello', name='world') }}">{{ url_for('hello', name='world') }}</a>.</p>
"""


@app.get("/")
def index():
    return render_template_string(PAGE)


@app.get("/hello/<name>")
def hello(name):
    return jsonify(message=f"Hello, {name}!")
