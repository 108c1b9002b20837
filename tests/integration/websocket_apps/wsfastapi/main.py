"""An ordinary FastAPI app with a WebSocket route, as FastAPI's docs write one."""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
left: list[int] = []


@app.get("/left")
def who_left() -> list[int]:
    return left


@app.websocket("/rooms/{room}")
async def room(websocket: WebSocket, room: str, name: str = "anon"):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"room": room, "from": name, "said": data})
    except WebSocketDisconnect as exc:
        left.append(exc.code)
