"""A hostile task: answers with JSON nested 100,000 levels deep (what a recursive
parser or path evaluator runs out of stack on)."""


async def handler(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"[" * 100_000 + b"]" * 100_000
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
