from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

app = APIGatewayRestResolver()


@app.get("/todos/<todo_id>")
def get_todo(todo_id: str):
    return {"id": todo_id, "title": f"todo {todo_id}",
            "verbose": app.current_event.get_query_string_value("verbose", "no")}


@app.post("/todos")
def create_todo():
    todo = app.current_event.json_body
    return {"created": todo["title"]}, 201


def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
