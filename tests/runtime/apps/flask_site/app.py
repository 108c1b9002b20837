"""A Flask app that builds its links with url_for."""

from flask import Flask, jsonify, make_response, redirect, request, url_for

app = Flask(__name__)


@app.get("/")
def index():
    return f'<a href="{url_for("greet", name="ada")}">greet</a>'


@app.get("/greet/<name>")
def greet(name):
    return jsonify(hello=name, q=request.args.getlist("q"), external=url_for("greet", name=name, _external=True))


@app.post("/form")
def form():
    resp = make_response(jsonify(dict(request.form)))
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")
    return resp


@app.get("/go")
def go():
    return redirect(url_for("index"))
