"""Governance against callers who try what they may not: someone else's app, a
token that expired or was made up, an ID token from the wrong place, a policy
that cannot decide. One server (with an OIDC issuer on loopback, so identities
are enabled from the start) serves a neighbour throughout; each attack runs
under ``neighbour_watch`` and the platform answers at the end."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from skiff.cli.client import pack
from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

APPS = Path(__file__).parent / "governance_apps"
AUDIENCE = "skiff-admin"


class Issuer:
    """An OIDC issuer on loopback: discovery document, JWKS, and ID tokens signed
    with its key (or, for the attacks, with another)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key(),
                                                             as_dict=True)
                    body = {"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str, groups: list[str], *, key: object = None, kid: str = "k1",
              aud: str = AUDIENCE, iss: str | None = None, exp_in: float = 600) -> str:
        now = int(time.time())
        claims = {"sub": sub, "groups": groups, "aud": aud, "iss": iss or self.url,
                  "iat": now, "exp": now + int(exp_in)}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})


def static_app(root: Path, name: str, owner: str | None, *, text: str = "v1",
               extra: str = "") -> Path:
    d = root / f"{name}-{abs(hash((owner, text, extra))) % 10**8}"
    (d / "public").mkdir(parents=True, exist_ok=True)
    meta = f"{{name: {name}" + (f', owner: "{owner}"' if owner else "") + "}"
    (d / "skiff.yaml").write_text(f"apiVersion: skiff.dev/v1\nkind: MicroApp\n"
                                  f"metadata: {meta}\nspec:\n  static: public\n{extra}")
    (d / "public" / "index.html").write_text(text)
    return d


def deploy(client: httpx.Client, d: Path) -> httpx.Response:
    return client.post("/apps", content=pack(d), headers={"content-type": "application/gzip"})


def as_(skiff: SkiffServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=skiff.url + "/_skiff/api", timeout=120,
                        headers={"authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    iss = Issuer()
    yield iss
    iss.server.shutdown()


@pytest.fixture(scope="module")
def skiff(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path,
          issuer: Issuer) -> Iterator[SkiffServer]:
    server = SkiffServer(tmp_path_factory.mktemp("home"), [], envs_dir, env={
        "SKIFF_OIDC_ISSUER": issuer.url, "SKIFF_OIDC_AUDIENCE": AUDIENCE,
        "SKIFF_OIDC_ROLES": "platform=operator,shop=developer",
        "SKIFF_POLICY_APPROVED_HOSTS": "api.stripe.com"})
    # identities are enabled (an issuer is configured): groups first, then the neighbour
    for group in ("platform", "shop", "other"):
        assert server.admin.post("/groups", json={"name": group}).status_code == 201
    assert deploy(server.admin, APPS / "neighbour").status_code == 201, server.lines
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens(skiff: SkiffServer) -> dict[str, str]:
    """Service tokens: alice (shop, developer), bob (other, developer), vera (viewer)."""
    out = {}
    for user, group, role in (("alice", "shop", "developer"), ("bob", "other", "developer"),
                              ("vera", "shop", "viewer")):
        assert skiff.admin.post("/users", json={"name": user, "groups": [group]}).status_code == 201
        r = skiff.admin.post("/tokens", json={"user": user, "role": role})
        assert r.status_code == 201, r.text
        out[user] = r.json()["token"]
    return out


def _error(r: httpx.Response) -> dict:
    return r.json()["error"]


def test_tokens_are_shown_once_and_stored_hashed(skiff: SkiffServer,
                                                 tokens: dict[str, str]) -> None:
    """`tokens ls` lists ids, users and roles, never a token; the database holds none."""
    listed = skiff.admin.get("/tokens").json()
    assert {t["user"] for t in listed} >= {"alice", "bob", "vera"}
    assert all("token" not in t and t["state"] == "active" for t in listed)
    db = (skiff.home / "governance.db").read_bytes()
    assert not any(t.encode() in db for t in tokens.values())
    with as_(skiff, tokens["alice"]) as alice:
        assert alice.get("/whoami").json()["name"] == "user:alice"


def test_unknown_expired_and_underprivileged_callers(skiff: SkiffServer,
                                                     tokens: dict[str, str]) -> None:
    """A made-up token is 401 unknown; an expired one 401 saying it expired; a viewer
    that deploys 403 naming the developer role; a developer managing tokens 403 admin."""
    r = skiff.admin.post("/tokens", json={"user": "shortlived", "role": "admin",
                                          "expires_in": 1})
    short = r.json()["token"]
    with neighbour_watch(skiff):
        with as_(skiff, "skf_" + "x" * 43) as forged:
            r = forged.get("/apps")
            assert r.status_code == 401 and _error(r)["code"] == "unknown_token"
        skiff.wait_for(lambda: as_(skiff, short).get("/apps").status_code == 401, "expiry")
        r = as_(skiff, short).get("/apps")
        assert _error(r)["code"] == "token_expired" and "expired" in _error(r)["message"]
        with as_(skiff, tokens["vera"]) as vera:
            assert vera.get("/apps").status_code == 200
            r = deploy(vera, static_app(skiff.home.parent, "vera-app", "group:shop"))
            assert r.status_code == 403 and _error(r)["code"] == "role_required"
            assert "developer" in _error(r)["message"]
        with as_(skiff, tokens["alice"]) as alice:
            r = alice.post("/tokens", json={"user": "alice", "role": "admin"})
            assert r.status_code == 403 and _error(r)["required"] == "admin"
            r = alice.put("/secrets/stolen", json={"value": "x"})
            assert r.status_code == 403 and _error(r)["required"] == "operator"
    assert skiff.admin.get("/health").status_code == 200


def test_owners_must_be_known_and_apps_cannot_be_taken_over(
        skiff: SkiffServer, tokens: dict[str, str], tmp_path: Path) -> None:
    """Unknown owner 422 naming those that exist; no owner 422; bob deploying over
    alice's app 409 owner_conflict naming its owner (her app keeps serving), and bob
    may neither roll it back nor delete it nor read its data (403)."""
    alice, bob = as_(skiff, tokens["alice"]), as_(skiff, tokens["bob"])
    with alice, bob, neighbour_watch(skiff):
        r = deploy(alice, static_app(tmp_path, "shop", "group:shopp"))
        assert r.status_code == 422 and _error(r)["code"] == "unknown_owner"
        assert "group:shop" in _error(r)["message"] and "user:alice" in _error(r)["owners"]
        r = deploy(alice, static_app(tmp_path, "shop", None))
        assert r.status_code == 422 and _error(r)["code"] == "owner_required"
        r = deploy(alice, static_app(tmp_path, "shop", "group:other"))
        assert r.status_code == 403 and _error(r)["code"] == "not_owner"
        assert deploy(alice, static_app(tmp_path, "shop", "group:shop")).status_code == 201
        assert deploy(alice, static_app(tmp_path, "shop", "group:shop",
                                        text="v2")).status_code == 201
        r = deploy(bob, static_app(tmp_path, "shop", "group:other", text="bob's"))
        assert r.status_code == 409 and _error(r)["code"] == "owner_conflict"
        assert _error(r)["owner"] == "group:shop" and "group:shop" in _error(r)["message"]
        assert skiff.http.get("/shop/").text == "v2"
        for attempt in (lambda: bob.post("/apps/shop/rollback"),
                        lambda: bob.delete("/apps/shop"),
                        lambda: bob.get("/apps/shop/kv")):
            r = attempt()
            assert r.status_code == 403 and _error(r)["code"] == "not_owner", r.text
        assert skiff.http.get("/shop/").text == "v2"
        assert alice.post("/apps/shop/rollback").status_code == 200
        assert skiff.http.get("/shop/").text == "v1"
    audit = skiff.admin.get("/audit", params={"app": "shop"}).json()
    seen = [(e["actor"], e["action"], e["decision"]) for e in audit]
    assert ("user:bob", "deploy", "denied") in seen
    assert ("user:bob", "delete", "denied") in seen
    assert ("user:alice", "rollback", "allowed") in seen
    assert any(e["reason"].startswith("owner_conflict") for e in audit)


def test_oidc_tokens_from_the_wrong_place_are_refused(skiff: SkiffServer, issuer: Issuer,
                                                      tmp_path: Path) -> None:
    """A valid ID token signs in (groups from its claim, role from SKIFF_OIDC_ROLES);
    expired, wrong-audience, wrong-key and wrong-issuer ones are 401s that say which."""
    good = issuer.token("olga", ["platform"])
    cases = {
        "expired": issuer.token("olga", ["platform"], exp_in=-120),
        "audience": issuer.token("olga", ["platform"], aud="another-client"),
        "wrong key": issuer.token("olga", ["platform"], key=issuer.other_key),
        "issuer": issuer.token("olga", ["platform"], iss="http://evil.example"),
        "does not publish": issuer.token("olga", ["platform"], key=issuer.other_key,
                                         kid="made-up"),
    }
    with neighbour_watch(skiff):
        with as_(skiff, good) as olga:
            me = olga.get("/whoami").json()
            assert me["name"] == "oidc:olga" and me["role"] == "operator"
            assert me["groups"] == ["platform"]
            # an operator may act on every app: a new one owned by a group it is not in
            assert deploy(olga, static_app(tmp_path, "ops-made", "group:shop")).status_code == 201
        for says, token in cases.items():
            with as_(skiff, token) as forged:
                r = forged.get("/apps")
            assert r.status_code == 401, (says, r.text)
            assert says in _error(r)["message"], (says, _error(r))
    signins = [e for e in skiff.admin.get("/audit").json() if e["action"] == "signin.oidc"]
    assert [e["actor"] for e in signins] == ["oidc:olga"]


def test_policies_deny_warn_and_fail_closed(skiff: SkiffServer, tokens: dict[str, str],
                                            tmp_path: Path) -> None:
    """The built-in pack denies an unapproved egress host (403 policy_denied naming it);
    an applied warn policy comes back with the deploy; a policy that cannot evaluate
    denies every deploy, naming itself; a syntax error is refused with line and column."""
    alice = as_(skiff, tokens["alice"])
    with alice, neighbour_watch(skiff):
        r = deploy(alice, static_app(tmp_path, "leaky", "group:shop",
                                     extra="  egress: [evil.example.net]\n"))
        assert r.status_code == 403 and _error(r)["code"] == "policy_denied"
        assert [d["policy"] for d in _error(r)["denials"]] == ["builtin.egress-approved"]
        r = skiff.admin.post("/policies", json={"text": (
            "id: team-label\nenforcement: warn\nmessage: apps should carry a team label\n"
            "expression: '\"team\" in input.manifest.metadata.labels'\n")})
        assert r.status_code == 201, r.text
        assert any(v["app"] == "shop" and v["policy"] == "team-label"
                   for v in r.json()["violations"])
        r = deploy(alice, static_app(tmp_path, "shop", "group:shop", text="v3"))
        assert r.status_code == 201
        assert [w["policy"] for w in r.json()["policy"]["warnings"]] == ["team-label"]
        r = skiff.admin.post("/policies", json={"text": (
            "id: broken\nmessage: m\nexpression: |\n  input.app == \"x\" &&\n    (true\n")})
        assert r.status_code == 422 and _error(r)["code"] == "invalid_policy"
        assert (_error(r)["line"], _error(r)["column"]) == (5, 10), _error(r)
        r = skiff.admin.post("/policies", json={"text": (
            "id: cost-centre\nenforcement: audit\nmessage: needs a cost centre\n"
            "expression: input.manifest.metadata.labels.costCentre != ''\n")})
        assert r.status_code == 201
        r = deploy(alice, static_app(tmp_path, "shop", "group:shop", text="v4"))
        assert r.status_code == 403 and "cost-centre" in _error(r)["message"]
        assert "could not be evaluated" in _error(r)["message"]
        assert skiff.http.get("/shop/").text == "v3"  # the previous revision still serves
        with as_(skiff, tokens["alice"]) as a:
            assert a.delete("/policies/cost-centre").status_code == 403  # admins only
        assert skiff.admin.delete("/policies/cost-centre").status_code == 200
    violations = skiff.admin.get("/policies/violations").json()
    assert {v["policy"] for v in violations if v["app"] == "neighbour"} == {"team-label"}


def test_cli_tokens_and_audit(skiff: SkiffServer) -> None:
    """`skiff tokens create --expires 30d` prints the token once (last line); `tokens
    revoke` ends it; `skiff audit --app --json` lists each step with its actor."""
    env = {**os.environ, "SKIFF_URL": skiff.url,
           "SKIFF_ADMIN_TOKEN": (skiff.home / "admin-token").read_text().strip()}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skiff", *args], capture_output=True,
                              text=True, env=env, timeout=120)

    made = cli("tokens", "create", "--user", "ci-bot", "--role", "developer", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    with as_(skiff, token) as bot:
        assert bot.get("/whoami").json()["name"] == "user:ci-bot"
        token_id = next(t["id"] for t in skiff.admin.get("/tokens").json()
                        if t["user"] == "ci-bot")
        assert cli("tokens", "revoke", token_id).returncode == 0
        r = bot.get("/apps")
        assert r.status_code == 401 and _error(r)["code"] == "token_revoked"
    listed = cli("audit", "--app", "shop", "--json")
    assert listed.returncode == 0, listed.stderr
    actions = [(e["actor"], e["action"]) for e in json.loads(listed.stdout)]
    assert ("user:alice", "deploy") in actions and ("user:bob", "delete") in actions
    everything = json.loads(cli("audit", "--since", "1h", "--json").stdout)
    assert {"token.create", "token.revoke", "user.add", "group.add", "policy.apply",
            "policy.rm", "signin.oidc"} <= {e["action"] for e in everything}


def test_restart_reevaluates_without_unserving(skiff: SkiffServer, envs_dir: Path) -> None:
    """A policy file added while the server is down: at start every app serves again,
    and the violations list and each app's log say what it violates. Last: it restarts
    the module's server."""
    skiff.stop()
    (skiff.home / "policies" / "no-static.yaml").write_text(
        "id: no-static\nmessage: static apps need a review\n"
        "expression: type(input.manifest.spec.static) == null_type\n")
    again = SkiffServer(skiff.home, [], envs_dir, env={
        "SKIFF_OIDC_ISSUER": "http://127.0.0.1:9", "SKIFF_OIDC_AUDIENCE": AUDIENCE})
    try:
        assert again.http.get("/neighbour/").status_code == 200
        found = again.admin.get("/policies/violations").json()
        assert {"neighbour", "shop"} <= {v["app"] for v in found if v["policy"] == "no-static"}
        logs = again.admin.get("/apps/neighbour/logs").json()
        assert any("no-static" in line["line"] for line in logs)
    finally:
        again.stop()
    shutil.rmtree(skiff.home / "policies")
