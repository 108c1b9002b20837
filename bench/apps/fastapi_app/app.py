"""A small FastAPI app: a path parameter, a query parameter and a validated
response model, served through Skiff and on plain uvicorn."""

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    item_id: int
    name: str
    q: str | None = None


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> Item:
    return Item(item_id=item_id, name=f"item-{item_id}", q=q)
