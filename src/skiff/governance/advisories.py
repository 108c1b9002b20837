"""The dependency audit: an app's locked requirements checked against an advisory
database that speaks the OSV API (https://google.github.io/osv.dev/api/), the
service pip-audit queries by default. ``SKIFF_ADVISORY_URL`` points it elsewhere
(a mirror, or a local OSV-protocol server); ``off`` turns it off.

What the audit finds feeds the policies as ``input.dependencies`` (the built-in
pack denies CRITICAL advisories). The service is outside the platform: it can be
slow, down or answer nonsense. Each of those ends as ``status: "unavailable"``
with the reason, never as a hung deploy or a traceback, and the policies decide
what an unaudited deploy may do (the built-in pack warns). Answers are cached:
an advisory record by id and a package's list by (name, version), so a redeploy
of the same lock costs no request within the hour.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

DEFAULT_URL = "https://api.osv.dev"
#: the GitHub advisory levels; a CVSS base score is mapped onto them
SEVERITIES = ("LOW", "MODERATE", "HIGH", "CRITICAL")
_CACHE_SECONDS = 3600.0
_MAX_RECORDS = 500  # advisory records fetched per audit: a lock is not a denial of service
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503: ``Flask_Login`` and ``flask-login`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock: str) -> list[tuple[str, str]]:
    """The ``name==version`` pins of a lock file (uv's output); anything else (URLs,
    editable paths) has no version to look up and is left out."""
    out = set()
    for line in lock.splitlines():
        m = _PIN.match(line.strip())
        if m:
            out.add((normalize(m.group(1)), m.group(2)))
    return sorted(out)


@dataclass(frozen=True)
class Advisory:
    package: str
    version: str
    id: str
    summary: str
    severity: str  # one of SEVERITIES, or "UNKNOWN"
    aliases: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()  # versions that fix it

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "id": self.id,
                "summary": self.summary, "severity": self.severity,
                "aliases": list(self.aliases), "fixed": list(self.fixed)}


@dataclass(frozen=True)
class Audit:
    #: "ok" (looked up), "none" (no pinned requirements), "off" (SKIFF_ADVISORY_URL=off),
    #: "unavailable" (the service did not answer usefully: ``error`` says why)
    status: str
    packages: tuple[tuple[str, str], ...] = ()
    advisories: tuple[Advisory, ...] = ()
    error: str = ""
    source: str = ""

    def to_input(self) -> dict[str, Any]:
        """``input.dependencies`` as policies see it (and the deploy result shows it)."""
        counts = {s: 0 for s in (*SEVERITIES, "UNKNOWN")}
        for a in self.advisories:
            counts[a.severity] += 1
        return {"status": self.status, "source": self.source, "error": self.error,
                "packages": [{"name": n, "version": v} for n, v in self.packages],
                "advisories": [a.to_dict() for a in self.advisories],
                "counts": counts}


NOT_AUDITED = Audit("none")


def severity_of(record: dict[str, Any]) -> str:
    """The advisory's level: the database's own label when it gives one (GitHub's
    records do), else the highest CVSS base score among its vectors."""
    label = str((record.get("database_specific") or {}).get("severity") or "").upper()
    if label == "MEDIUM":
        label = "MODERATE"
    if label in SEVERITIES:
        return label
    best = -1.0
    for entry in record.get("severity") or ():
        best = max(best, _cvss_score(str(entry.get("type", "")), str(entry.get("score", ""))))
    if best < 0:
        return "UNKNOWN"
    return ("LOW" if best < 4.0 else "MODERATE" if best < 7.0
            else "HIGH" if best < 9.0 else "CRITICAL")


def _cvss_score(kind: str, vector: str) -> float:
    try:
        import cvss

        if kind == "CVSS_V3":
            return float(cvss.CVSS3(vector).scores()[0])
        if kind == "CVSS_V4":
            return float(cvss.CVSS4(vector).base_score)
    except Exception:  # noqa: BLE001 - a malformed vector counts as no score
        return -1.0
    return -1.0


def fixed_versions(record: dict[str, Any], package: str) -> tuple[str, ...]:
    out: list[str] = []
    for affected in record.get("affected") or ():
        pkg = affected.get("package") or {}
        if normalize(str(pkg.get("name", ""))) != package:
            continue
        for rng in affected.get("ranges") or ():
            for event in rng.get("events") or ():
                if "fixed" in event and str(event["fixed"]) not in out:
                    out.append(str(event["fixed"]))
    return tuple(out)


@dataclass
class AdvisoryDB:
    """A client of one OSV-protocol service, with its caches. Thread-safe; blocking."""

    url: str = DEFAULT_URL
    timeout: float = 5.0
    _lists: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = field(default_factory=dict)
    _records: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return self.url.strip().lower() not in ("", "off", "none", "0")

    def audit(self, packages: Iterable[tuple[str, str]]) -> Audit:
        pkgs = tuple(sorted(set(packages)))
        if not pkgs:
            return Audit("none", source=self.url if self.enabled else "")
        if not self.enabled:
            return Audit("off", pkgs)
        try:
            ids = self._ids(pkgs)
            wanted = sorted({i for found in ids.values() for i in found})[:_MAX_RECORDS]
            records = self._fetch(wanted)
        except Exception as exc:  # noqa: BLE001 - any failure of the service: say so, go on
            return Audit("unavailable", pkgs, error=_reason(exc), source=self.url)
        found = []
        for (name, version), vuln_ids in ids.items():
            for vid in vuln_ids:
                rec = records.get(vid)
                if rec is None:
                    continue
                found.append(Advisory(
                    name, version, vid, str(rec.get("summary") or rec.get("details") or "")[:300],
                    severity_of(rec), tuple(str(a) for a in rec.get("aliases") or ()),
                    fixed_versions(rec, name)))
        found.sort(key=lambda a: (-_rank(a.severity), a.package, a.id))
        return Audit("ok", pkgs, tuple(found), source=self.url)

    def _client(self):  # noqa: ANN202
        import httpx

        return httpx.Client(base_url=self.url.rstrip("/"), timeout=self.timeout,
                            headers={"user-agent": "skiff-dependency-audit"})

    def _ids(self, pkgs: tuple[tuple[str, str], ...]) -> dict[tuple[str, str], tuple[str, ...]]:
        now = time.monotonic()
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        with self._lock:
            for p in pkgs:
                hit = self._lists.get(p)
                if hit and now - hit[0] < _CACHE_SECONDS:
                    out[p] = hit[1]
        missing = [p for p in pkgs if p not in out]
        if missing:
            with self._client() as http:
                queries = [{"package": {"name": n, "ecosystem": "PyPI"}, "version": v}
                           for n, v in missing]
                res = http.post("/v1/querybatch", json={"queries": queries})
                res.raise_for_status()
                results = res.json()["results"]
                if len(results) != len(missing):
                    raise ValueError(f"{len(results)} results for {len(missing)} queries")
                for p, q, r in zip(missing, queries, results, strict=True):
                    ids = [str(v["id"]) for v in (r or {}).get("vulns") or ()]
                    token = (r or {}).get("next_page_token")
                    while token:  # a package with many advisories is paged
                        more = http.post("/v1/query", json={**q, "page_token": token})
                        more.raise_for_status()
                        body = more.json()
                        ids += [str(v["id"]) for v in body.get("vulns") or ()]
                        token = body.get("next_page_token")
                    out[p] = tuple(dict.fromkeys(ids))
            with self._lock:
                for p in missing:
                    self._lists[p] = (now, out[p])
        return out

    def _fetch(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            have = {i: self._records[i] for i in ids if i in self._records}
        missing = [i for i in ids if i not in have]
        if missing:
            with self._client() as http:
                def one(vid: str) -> dict[str, Any]:
                    res = http.get(f"/v1/vulns/{vid}")
                    res.raise_for_status()
                    body = res.json()
                    if not isinstance(body, dict):
                        raise ValueError(f"advisory {vid}: not a record")
                    return body

                with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
                    for vid, rec in zip(missing, pool.map(one, missing), strict=True):
                        have[vid] = rec
            with self._lock:
                self._records.update({i: have[i] for i in missing})
        return have


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
