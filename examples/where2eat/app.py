"""where2eat: settle "where do we go for lunch?" in one click.

A Lambda-style JSON API written with Powertools' ``APIGatewayHttpResolver``,
exactly as it would run on AWS Lambda behind an API Gateway HTTP API; Skiff
hands it the same payload 2.0 event. The page in ``public/`` calls it with
relative URLs, so it works under ``/where2eat/`` and on
``where2eat.localhost`` alike.

    GET  /api/places?budget=N   the list, optionally only places costing at most N
    POST /api/places            add {"name": "...", "cuisine": "...", "price": 1-3}
    GET  /api/pick?budget=N     one random place costing at most N

Prices are levels, not amounts: 1 = $, 2 = $$, 3 = $$$.

The list lives in module memory, and Skiff instances are ephemeral: an
instance that idles out (``scaling.idleTimeout``) forgets the places added to
it, and two instances never share them. Fine for a demo; a later release gives
apps a KV store for exactly this.
"""

from __future__ import annotations

import random
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.exceptions import (
    BadRequestError,
    NotFoundError,
    ServiceError,
)

MAX_PRICE = 3
MAX_TEXT = 80

app = APIGatewayHttpResolver()

PLACES: list[dict[str, Any]] = [
    {"name": "Pho Corner", "cuisine": "vietnamese", "price": 1},
    {"name": "Falafel Brothers", "cuisine": "middle eastern", "price": 1},
    {"name": "Trattoria Lucia", "cuisine": "italian", "price": 2},
    {"name": "Green Bowl", "cuisine": "salads", "price": 2},
    {"name": "Sakura Sushi", "cuisine": "japanese", "price": 3},
]


@app.get("/api/places")
def list_places() -> dict[str, Any]:
    budget = _budget(app.current_event.get_query_string_value("budget"))
    return {"places": [place for place in PLACES if place["price"] <= budget]}


@app.post("/api/places")
def add_place() -> tuple[dict[str, Any], int]:
    place = _parse_place(_json_body())
    if any(p["name"].casefold() == place["name"].casefold() for p in PLACES):
        raise ServiceError(409, f"{place['name']} is already on the list")
    PLACES.append(place)
    return place, 201


@app.get("/api/pick")
def pick() -> dict[str, Any]:
    budget = _budget(app.current_event.get_query_string_value("budget"))
    candidates = [place for place in PLACES if place["price"] <= budget]
    if not candidates:
        raise NotFoundError(f"no place costs {'$' * budget} or less; add one first")
    return random.choice(candidates)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


def _budget(raw: str | None) -> int:
    """A missing budget means "anything"; a wrong one is the caller's mistake, not ours."""
    if raw is None or raw == "":
        return MAX_PRICE
    try:
        budget = int(raw)
    except ValueError:
        budget = 0
    if not 1 <= budget <= MAX_PRICE:
        raise BadRequestError(f"budget must be a whole number from 1 to {MAX_PRICE}, got {raw!r}")
    return budget


def _json_body() -> Any:
    # Powertools lets a malformed body escape as JSONDecodeError (a 500);
    # a client sending bad JSON deserves a 400 that says so.
    try:
        return app.current_event.json_body
    except ValueError:
        raise BadRequestError("body must be valid JSON") from None


def _parse_place(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequestError('body must be a JSON object like {"name": "...", "price": 2}')
    name = _text(data, "name", required=True)
    cuisine = _text(data, "cuisine", required=False)
    price = data.get("price")
    # bool is an int subclass; {"price": true} is a bug in the caller, not "$".
    if isinstance(price, bool) or not isinstance(price, int) or not 1 <= price <= MAX_PRICE:
        raise BadRequestError(f"price must be a whole number from 1 to {MAX_PRICE}")
    return {"name": name, "cuisine": cuisine, "price": price}


def _text(data: dict[str, Any], field: str, *, required: bool) -> str:
    value = data.get(field, "")
    if not isinstance(value, str):
        raise BadRequestError(f"{field} must be a string")
    value = " ".join(value.split())
    if required and not value:
        raise BadRequestError(f"{field} is required")
    if len(value) > MAX_TEXT:
        raise BadRequestError(f"{field} must be at most {MAX_TEXT} characters")
    return value
