"""An unmodified Powertools APIGatewayRestResolver app (a REST API, payload 1.0)."""

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types

app = APIGatewayRestResolver()
ENTRIES: dict[str, dict] = {}


@app.get("/entries/<entry_id>")
def get_entry(entry_id: str):
    return ENTRIES.get(entry_id, {"missing": entry_id})


@app.post("/entries")
def add_entry():
    entry = app.current_event.json_body
    ENTRIES[entry["id"]] = entry
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=entry,
                    headers={"x-tag": ["a", "b"]})


@app.get("/search")
def search():
    event = app.current_event
    return {"q": event.get_query_string_value("q", ""),
            "tags": event.multi_value_query_string_parameters.get("tag", []),
            "method": event.http_method, "stage": event.request_context.stage}


def lambda_handler(event, context):
    return app.resolve(event, context)
