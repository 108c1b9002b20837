"""A git repository of micro apps nobody registered, committed by two authors: the
ground a discovery sweep runs over (tests/governance and tests/integration)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ALICE = "alice@example.com"
BOB = "bob@example.com"

FILES = {
    "billing/handler.py": (ALICE, "import json\n\n\ndef handler(event, context):\n"
                                  "    return {'statusCode': 200, 'body': json.dumps(event)}\n"),
    "menu/main.py": (BOB, "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n"
                          "@app.get('/')\ndef index():\n    return {'menu': []}\n"),
    "orders/template.yaml": (ALICE, "AWSTemplateFormatVersion: '2010-09-09'\n"
                                    "Transform: AWS::Serverless-2016-10-31\nResources:\n"
                                    "  OrdersFunction:\n    Type: AWS::Serverless::Function\n"
                                    "    Properties:\n      Handler: app.lambda_handler\n"
                                    "      CodeUri: !Ref CodeBucket\n"),
    "rota/Dockerfile": (BOB, "FROM python:3.12-slim\nRUN pip install uvicorn\nCOPY . /app\n"
                             'CMD ["uvicorn", "app:app", "--host", "0.0.0.0"]\n'),
    "notes/skiff.yaml": (ALICE, "apiVersion: skiff.dev/v1\nkind: MicroApp\nmetadata:\n"
                                "  name: notes\nspec:\n  handler: handler.handler\n"),
    "notes/handler.py": (ALICE, "def handler(event, context):\n    return {'notes': []}\n"),
    "tools/helpers.py": (BOB, "def add(a, b):\n    return a + b\n"),  # no app
    ".venv/lib/site.py": (BOB, "def handler(event, context):\n    pass\n"),  # never entered
}


def git(repo: Path, *args: str, author: str | None = None) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    if author:
        name = author.split("@")[0]
        env |= {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": author,
                "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": author}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def make_repo(root: Path) -> Path:
    """Each file committed by its author; then Bob touches billing once (Alice still
    has more of its commits) and Alice fixes a typo in the Dockerfile (Bob has one
    commit, Alice one: a tie goes to who started it, Bob)."""
    repo = root / "sweep"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for rel, (author, text) in FILES.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(repo, "add", "-f", rel)
        git(repo, "commit", "-q", "-m", f"add {rel}", author=author)
    billing = repo / "billing/handler.py"
    billing.write_text(billing.read_text() + "# v2\n")
    git(repo, "commit", "-q", "-am", "billing v2", author=ALICE)
    billing.write_text(billing.read_text() + "# reviewed\n")
    git(repo, "commit", "-q", "-am", "review", author=BOB)
    docker = repo / "rota/Dockerfile"
    docker.write_text(docker.read_text().replace("slim", "slim-bookworm"))
    git(repo, "commit", "-q", "-am", "pin", author=ALICE)
    return repo
