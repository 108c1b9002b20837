"""A local OSV-protocol advisory service on loopback (the API pip-audit and
Skiff's dependency audit query: POST /v1/querybatch, POST /v1/query, GET
/v1/vulns/ID), serving recorded advisory records. A query matches a record when
the record lists the package's version under ``affected[].versions``, as OSV's
own records do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# GHSA-xpfp-f569-q3p2 (CVE-2021-35042, PYSEC-2021-111) as the OSV API returns it,
# trimmed to the fields a client reads; Django 3.2 before 3.2.5.
DJANGO_ORDER_BY = {
    "id": "GHSA-xpfp-f569-q3p2",
    "summary": "SQL Injection in Django",
    "details": "Django 3.1.x before 3.1.13 and 3.2.x before 3.2.5 allows QuerySet.order_by "
               "SQL injection if order_by is untrusted input from a client of a web app.",
    "aliases": ["CVE-2021-35042", "PYSEC-2021-111"],
    "modified": "2024-09-25T21:05:20Z",
    "published": "2021-07-02T17:29:50Z",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [{
        "package": {"ecosystem": "PyPI", "name": "django", "purl": "pkg:pypi/django"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "3.2"}, {"fixed": "3.2.5"}]}],
        "versions": ["3.2", "3.2.1", "3.2.2", "3.2.3", "3.2.4"],
    }],
    "database_specific": {"cwe_ids": ["CWE-89"], "github_reviewed": True,
                          "severity": "CRITICAL"},
}


class OSVServer:
    """``with OSVServer([record, ...]) as osv:`` then ``osv.url``; ``osv.requests``
    lists (method, path) of what it was asked; ``osv.broken = True`` answers 503."""

    def __init__(self, records: list[dict], page_size: int = 100) -> None:
        self.records = {r["id"]: r for r in records}
        self.requests: list[tuple[str, str]] = []
        self.broken = False
        self.page_size = page_size
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(("GET", self.path))
                if server.broken:
                    return self._send(503, {"message": "unavailable"})
                vid = self.path.removeprefix("/v1/vulns/")
                if vid in server.records:
                    return self._send(200, server.records[vid])
                return self._send(404, {"code": 5, "message": "Bug not found."})

            def do_POST(self) -> None:  # noqa: N802
                server.requests.append(("POST", self.path))
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if server.broken:
                    return self._send(503, {"message": "unavailable"})
                if self.path == "/v1/querybatch":
                    return self._send(200, {"results": [server.page(q) for q in body["queries"]]})
                if self.path == "/v1/query":
                    return self._send(200, server.page(body))
                return self._send(404, {"message": "not found"})

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    def page(self, query: dict) -> dict:
        name = query["package"]["name"].lower()
        hits = [{"id": r["id"], "modified": r["modified"]} for r in self.records.values()
                if any(a["package"]["name"].lower() == name and query["version"] in a["versions"]
                       for a in r["affected"])]
        start = int(query.get("page_token") or 0)
        out: dict = {"vulns": hits[start:start + self.page_size]} if hits else {}
        if start + self.page_size < len(hits):
            out["next_page_token"] = str(start + self.page_size)
        return out

    def __enter__(self) -> OSVServer:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
