"""__APP_NAME__: a FastAPI app.

Skiff runs it as ASGI with ``root_path`` set to where it is mounted
(``/__APP_NAME__``), so write routes as if the app were at ``/``; the docs
are at ``/__APP_NAME__/docs``.
"""

from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI(title="__APP_NAME__")


class Greeting(BaseModel):
    message: str


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    quantity: int = Field(default=1, ge=1)


@app.get("/")
async def index() -> dict[str, str]:
    return {"app": "__APP_NAME__", "docs": "docs"}


@app.get("/hello/{name}")
async def hello(name: str) -> Greeting:
    return Greeting(message=f"Hello, {name}!")


@app.post("/items", status_code=201)
async def create_item(item: Item) -> Item:
    return item
