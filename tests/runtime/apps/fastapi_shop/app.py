"""A FastAPI app that knows nothing of its mount: root_path does the work."""

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

app = FastAPI()


@app.get("/items")
def list_items():
    return [{"id": 1, "name": "kettle"}]


@app.get("/items/{item_id}", name="item")
def get_item(item_id: int, request: Request):
    return {"id": item_id, "self": str(request.url_for("item", item_id=item_id)),
            "root_path": request.scope["root_path"]}


@app.post("/items")
async def add_item(request: Request):
    return {"got": await request.json()}


@app.get("/stream")
def stream():
    return StreamingResponse(iter([b"a", b"b", b"c"]), media_type="text/plain")


@app.get("/boom")
def boom():
    raise RuntimeError("kaboom")


@app.get("/text")
def text():
    return PlainTextResponse("hi", headers={"X-Shop": "yes"})
