"""An app whose responses try to break the HTTP framing of the client's connection:
each case is a response the gateway must refuse (502) or frame itself."""

# What a desync would make the next request on the connection receive.
POISON = ("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n"
          '{"ok": "poisoned!!"}')

CASES = {
    "status100": {"statusCode": 100, "body": POISON},
    "status101": {"statusCode": 101, "headers": {"upgrade": "h2c", "connection": "upgrade"},
                  "body": POISON},
    "status99": {"statusCode": 99, "body": POISON},
    "status600": {"statusCode": 600, "body": POISON},
    "cl_te": {"statusCode": 200, "headers": {"content-length": "0",
                                             "transfer-encoding": "chunked"},
              "body": "0\r\n\r\n" + POISON},
    "short_cl": {"statusCode": 200, "headers": {"content-length": "2"}, "body": "ok" + POISON},
    "connection": {"statusCode": 200, "headers": {"connection": "keep-alive, x-foo",
                                                  "keep-alive": "timeout=999", "te": "x",
                                                  "trailer": "x-t", "upgrade": "h2c"},
                   "body": "framed by the gateway"},
    "crlf": {"statusCode": 200, "headers": {"x-evil": "a\r\n\r\n" + POISON}, "body": "x"},
    "lf": {"statusCode": 200, "headers": {"x-evil": "a\nset-cookie: pwned=1"}, "body": "x"},
    "nul": {"statusCode": 200, "headers": {"x-evil": "a\x00b"}, "body": "x"},
    "badname": {"statusCode": 200, "headers": {"bad name": "x"}, "body": "x"},
    "colonname": {"statusCode": 200, "headers": {"x-a: b\r\nx-c": "d"}, "body": "x"},
    "nonlatin": {"statusCode": 200, "headers": {"x-euro": "€"}, "body": "x"},
    "no_content": {"statusCode": 204, "body": POISON},
    "not_modified": {"statusCode": 304, "body": POISON},
    "request_id": {"statusCode": 200, "headers": {"x-skiff-request-id": "spoofed"},
                   "body": "x"},
}


def handler(event, context):
    case = (event.get("queryStringParameters") or {}).get("case", "")
    return CASES.get(case, {"statusCode": 200, "body": "fine"})
