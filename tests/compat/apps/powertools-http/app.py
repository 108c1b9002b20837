from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

app = APIGatewayHttpResolver()


@app.get("/hello/<name>")
def hello(name: str):
    return {"message": f"hello {name}", "lang": app.current_event.get_query_string_value("lang", "en")}


def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
