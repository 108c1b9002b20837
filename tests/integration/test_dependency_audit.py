"""The dependency audit at deploy, end to end: the server locks an app's
requirements, asks the advisory service (a local OSV-protocol server, tests/osv.py)
and the built-in pack denies a CRITICAL advisory before anything is installed or
stored, naming the package, the advisory and the fixed version; `skiff policy test`
says the same locally. A service that is down lets the deploy through with a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from skiff.cli.client import pack
from tests.conftest import EXAMPLES, TEST_APPS
from tests.osv import DJANGO_ORDER_BY, OSVServer


def _app(root: Path, requirement: str | None) -> Path:
    app = root / "oldstack"
    app.mkdir(parents=True)
    (app / "skiff.yaml").write_text("apiVersion: skiff.dev/v1\nkind: MicroApp\n"
                                    "metadata: {name: oldstack, owner: \"user:ada\"}\n"
                                    "spec: {handler: app:handler}\n")
    (app / "app.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    if requirement:
        (app / "requirements.txt").write_text(requirement + "\n")
    return app


def test_a_critical_advisory_denies_the_deploy_and_policy_test_says_why(
        start_server, tmp_path: Path, envs_dir: Path) -> None:
    with OSVServer([DJANGO_ORDER_BY]) as osv:
        server = start_server(TEST_APPS / "hello", env={"SKIFF_ADVISORY_URL": osv.url})
        app = _app(tmp_path, "django==3.2")
        res = server.admin.post("/apps", content=pack(app),
                                headers={"content-type": "application/gzip"})
        assert res.status_code == 403, res.text
        err = res.json()["error"]
        assert err["code"] == "policy_denied"
        assert "builtin.no-critical-advisories" in err["message"]
        assert "django 3.2: GHSA-xpfp-f569-q3p2 (CRITICAL), fixed in 3.2.5" in err["message"]
        assert err["advisories"][0]["aliases"] == ["CVE-2021-35042", "PYSEC-2021-111"]
        assert ("POST", "/v1/querybatch") in osv.requests
        assert server.admin.get("/apps/oldstack").status_code == 404  # nothing stored

        env = {**os.environ, "SKIFF_ADVISORY_URL": osv.url,
               "SKIFF_ENVS_DIR": str(envs_dir)}
        run = subprocess.run([sys.executable, "-m", "skiff", "policy", "test", str(app),
                              "--json", "--home", str(tmp_path / "local")],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 1, run.stderr
        result = json.loads(run.stdout)
        assert result["dependencies"]["counts"]["CRITICAL"] == 1
        denied = [d["policy"] for d in result["decisions"] if not d["allowed"]]
        assert denied == ["builtin.no-critical-advisories"]

        osv.broken = True  # a service that is down: deployed, with a warning that says so
        # the guestbook example's requirements: the environment other tests build
        flask = (EXAMPLES / "guestbook-flask" / "requirements.txt").read_text().strip()
        res = server.admin.post("/apps", content=pack(_app(tmp_path / "b", flask)),
                                headers={"content-type": "application/gzip"})
        assert res.status_code == 201, res.text
        body = res.json()
        assert body["dependencies"]["status"] == "unavailable"
        assert "503" in body["dependencies"]["error"]
        assert [w["policy"] for w in body["policy"]["warnings"]] == [
            "builtin.dependencies-audited"]
