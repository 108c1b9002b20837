"""todo-fastapi: a to-do list API, as an ordinary FastAPI app.

Skiff runs it as ASGI with ``root_path`` set to the mount (``/todo-fastapi``),
so the interactive docs at ``/todo-fastapi/docs`` find their OpenAPI schema
without any change here.

    GET    /todos?done=false   list, optionally filtered by state
    POST   /todos              create {"title": "...", "done": false} -> 201
    GET    /todos/{id}         one to-do, or 404
    PATCH  /todos/{id}         change title and/or done, or 404
    DELETE /todos/{id}         remove, 204, or 404

FastAPI answers invalid bodies and ids with a 422 that names the bad field.
To-dos live in memory and are lost when the instance scales to zero; a later
Skiff release adds a KV store for this.
"""

from __future__ import annotations

from itertools import count
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

Title = Annotated[str, Field(min_length=1, max_length=200, examples=["Buy oat milk"])]


class TodoCreate(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    title: Title
    done: bool = False


class TodoUpdate(BaseModel):
    """Only the fields sent are changed; ``null`` means "leave as is"."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    title: Title | None = None
    done: bool | None = None


class Todo(BaseModel):
    id: int
    title: str
    done: bool


app = FastAPI(title="todo-fastapi", summary="A small to-do list API running on Skiff.")

# Handlers are `async def`, so they all run on the event loop one at a time
# and this dict needs no lock.
todos: dict[int, Todo] = {}
next_id = count(1)


@app.get("/todos")
async def list_todos(done: bool | None = None) -> list[Todo]:
    return [todo for todo in todos.values() if done is None or todo.done == done]


@app.post("/todos", status_code=status.HTTP_201_CREATED)
async def create_todo(body: TodoCreate, request: Request, response: Response) -> Todo:
    todo = Todo(id=next(next_id), **body.model_dump())
    todos[todo.id] = todo
    # url_for includes root_path, so the link is right under the Skiff mount.
    response.headers["Location"] = str(request.url_for("get_todo", todo_id=todo.id))
    return todo


@app.get("/todos/{todo_id}")
async def get_todo(todo_id: int) -> Todo:
    return _find(todo_id)


@app.patch("/todos/{todo_id}")
async def update_todo(todo_id: int, body: TodoUpdate) -> Todo:
    todo = _find(todo_id).model_copy(update=body.model_dump(exclude_none=True))
    todos[todo_id] = todo
    return todo


@app.delete("/todos/{todo_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_todo(todo_id: int) -> None:
    _find(todo_id)
    del todos[todo_id]


def _find(todo_id: int) -> Todo:
    try:
        return todos[todo_id]
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"todo {todo_id} not found") from None
