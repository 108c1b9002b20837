import functions_framework
from flask import Response, jsonify


@functions_framework.http
def hello_http(request):
    """HTTP Cloud Function: any return value Flask's make_response accepts."""
    if request.path == "/stream":
        def generate():
            for i in range(3):
                yield f"line {i}\n"
        return Response(generate(), mimetype="text/plain")
    if request.method == "POST":
        body = request.get_json(silent=True) or {}
        return jsonify(echo=body, path=request.path)
    name = request.args.get("name", "World")
    return f"Hello {name}!", 200, {"X-Function": "hello_http"}
