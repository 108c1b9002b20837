from flask import Blueprint

bp = Blueprint("blog", __name__)


@bp.route("/")
def index():
    return "<h1>Posts</h1>"


@bp.route("/<int:id>")
def post(id):
    return {"id": id}
