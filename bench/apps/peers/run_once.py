"""A fresh interpreter per invocation: import the handler from a directory, call
it with the event given as JSON, print the result (``python -I run_once.py DIR
EVENT_JSON``)."""

import json
import sys

sys.path.insert(0, sys.argv[1])
from handler import handler  # noqa: E402

print(json.dumps(handler(json.loads(sys.argv[2]), None)), flush=True)
