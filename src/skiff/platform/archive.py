"""An app's archive: one ``$SKIFF_HOME/archive/<app>-<time>.tar.gz`` holding what
it takes to bring the app back as it was, and nothing the operator did not give
it: the code of every revision, their manifests, a snapshot of its KV items and
of the messages pending in its queues, and its secret *references* (the values
stay in the secret store; a restore resolves the refs again).

Layout (``format`` 1)::

    app.json            name, reason, time, current revision, owner, routes, secret refs
    revisions.json      every revision row: digest, manifest, created, environment
    code/<digest>.tar.gz  each revision's code bundle (as the registry keeps it)
    kv.jsonl            {"key", "value", "expires_at"} per live item
    messages.jsonl      {"queue", "body" (base64), "attributes"} per pending message
    data.tar.gz         the files of its data directory (resources.diskMB), if it has one

The file is written under a temporary name, fsync'd and renamed: an archive
either exists whole or not at all, and the app's data is removed only after
that (``Deployer.delete`` calls :meth:`Archiver.write` between un-serving the
app and removing its data, so nothing changes in between). Archives are 0600
in a 0700 directory: KV values are the app's data."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from skiff.bus import Broker
from skiff.errors import DeployError
from skiff.manifest import Manifest
from skiff.manifest.queues import declared_queues
from skiff.platform.datadirs import DataDirs
from skiff.store import KV, Store
from skiff.store.registry import pack_code
from skiff.triggers.plane import async_queue

FORMAT = 1
#: messages snapshot per queue: a queue of a million messages is an incident, not an
#: archive (the rest are counted in app.json as left out)
MAX_MESSAGES_PER_QUEUE = 100_000
_KV_PAGE = 1000  # the KV's own page maximum


@dataclass(frozen=True)
class Archived:
    """An archive read back (``code``: digest -> bundle bytes)."""

    meta: dict
    revisions: list[dict]
    code: dict[str, bytes]
    kv: list[dict]
    messages: list[dict]
    data: bytes | None = None  # the data directory's files (tar.gz)


class Archiver:
    def __init__(self, home: Path, *, store: Store, kv: KV, broker: Broker,
                 data: DataDirs | None = None) -> None:
        self.dir = home / "archive"
        self.data = data
        self._store = store
        self._kv = kv
        self._broker = broker

    def write(self, name: str, current: str, manifest: Manifest, code_dirs: dict[str, Path],
              manifests: list[Manifest], reason: str) -> Path:
        """Archive the app (blocking). ``code_dirs``: revision -> this node's code of it
        (a revision only in the registry's bundles is taken from there)."""
        now = time.time()
        self.dir.mkdir(mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:] + "Z"
        path = self.dir / f"{name}-{stamp}.tar.gz"
        revisions = self._store.revisions(name)
        files: dict[str, bytes] = {}
        for row in revisions:
            code = code_dirs.get(row.revision)
            data = pack_code(code) if code is not None and code.is_dir() else \
                self._store.bundle(name, row.revision)
            if data is not None:
                files[f"code/{row.revision}.tar.gz"] = data
        kv = self._kv_items(name)
        messages, left_out = self._messages(name, manifests)
        data = self.data.pack(name) if self.data is not None else None
        if data is not None:
            files["data.tar.gz"] = data
        spec = manifest.spec
        meta = {"format": FORMAT, "app": name, "reason": reason, "archived": now,
                "current": current, "owner": manifest.metadata.owner,
                "routes": [{"host": r.host, "path": r.path} for r in spec.routes],
                "secret_refs": [{"name": s.name, "ref": s.ref} for s in spec.secrets],
                "kv_items": len(kv), "messages": len(messages),
                "messages_left_out": left_out, "data_bytes": len(data or b"")}
        files["app.json"] = json.dumps(meta, indent=2).encode()
        files["revisions.json"] = json.dumps(
            [{"revision": r.revision, "manifest": r.manifest, "created": r.created,
              "env_key": r.env_key} for r in revisions], indent=2).encode()
        files["kv.jsonl"] = b"".join(json.dumps(i).encode() + b"\n" for i in kv)
        files["messages.jsonl"] = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                with tarfile.open(fileobj=out, mode="w:gz") as tar:
                    for member, data in files.items():
                        info = tarfile.TarInfo(member)
                        info.size, info.mtime, info.mode = len(data), int(now), 0o600
                        tar.addfile(info, io.BytesIO(data))
                out.flush()
                os.fsync(out.fileno())
            tmp.rename(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dirfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dirfd)  # the rename is durable before the data it saves is removed
        finally:
            os.close(dirfd)
        return path

    def _kv_items(self, name: str) -> list[dict]:
        items, cursor = [], None
        while True:
            page = self._kv.query(name, "", limit=_KV_PAGE, cursor=cursor)
            items += [{"key": i.key, "value": i.value, "expires_at": i.expires_at}
                      for i in page.items]
            cursor = page.next_cursor
            if cursor is None:
                return items

    def _messages(self, name: str, manifests: list[Manifest]) -> tuple[list[dict], int]:
        """Pending messages of the queues the app declares and of its own async and
        rule queues."""
        queues: set[str] = set()
        for m in manifests:
            queues |= set(declared_queues(m))
        queues |= {q.name for q in self._broker.queues()
                   if q.name == async_queue(name) or q.name.startswith(f"skiff:rule:{name}:")}
        out, left_out = [], 0
        for queue in sorted(queues):
            batch = self._broker.peek(queue, MAX_MESSAGES_PER_QUEUE + 1)
            left_out += max(0, len(batch) - MAX_MESSAGES_PER_QUEUE)
            out += [{"queue": queue, "body": base64.b64encode(m.body).decode(),
                     "attributes": m.attributes}
                    for m in batch[:MAX_MESSAGES_PER_QUEUE]]
        return out, left_out

    def read(self, path: str | Path) -> Archived:
        """An archive back (blocking); a file that is not one is the operator's 422."""
        try:
            with tarfile.open(path, mode="r:gz") as tar:
                files = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                         for m in tar.getmembers() if m.isfile()}
            meta = json.loads(files["app.json"])
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
            return Archived(
                meta=meta, revisions=json.loads(files["revisions.json"]),
                code={k.removeprefix("code/").removesuffix(".tar.gz"): v
                      for k, v in files.items() if k.startswith("code/")},
                kv=[json.loads(line) for line in files["kv.jsonl"].splitlines() if line],
                messages=[json.loads(line) for line in files["messages.jsonl"].splitlines()
                          if line], data=files.get("data.tar.gz"))
        except (OSError, tarfile.TarError, KeyError, ValueError, EOFError) as exc:
            raise DeployError(f"the archive {path} cannot be read ({exc}); restore from a "
                              "copy of it, or deploy the app again",
                              code="archive_invalid") from None
