"""An unmodified Powertools APIGatewayHttpResolver app, as it would run on AWS."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.shared.cookies import Cookie

logger = Logger(service="pantry")
app = APIGatewayHttpResolver()

ITEMS = {"1": {"id": "1", "name": "flour"}}


@app.get("/items/<item_id>")
def get_item(item_id: str):
    if item_id not in ITEMS:
        raise NotFoundError(f"no item {item_id}")
    return ITEMS[item_id]


@app.post("/items")
def add_item():
    item = app.current_event.json_body
    ITEMS[item["id"]] = item
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON,
                    body=item, cookies=[Cookie(name="last", value=item["id"])])


@app.get("/search")
def search():
    event = app.current_event
    return {
        "q": event.get_query_string_value("q", ""),
        "tags": event.query_string_parameters.get("tag", ""),
        "session": event.cookies,
    }


@app.get("/whoami")
def whoami():
    ctx = app.lambda_context
    return {"function": ctx.function_name, "arn": ctx.invoked_function_arn,
            "request_id": ctx.aws_request_id}


@logger.inject_lambda_context
def lambda_handler(event, context):
    return app.resolve(event, context)
