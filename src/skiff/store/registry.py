"""The registry interface: apps, revisions, app uids, route grants, code bundles.

Two backends keep it: :class:`skiff.store.sqlite.Store` (the embedded file) and
:class:`skiff.store.registry_postgres.PostgresRegistry` (the shared engine);
tests/store/test_registry_contract.py is the contract both keep.

A *code bundle* is a revision's code as a gzipped tar, stored beside the
revision so that another node can fetch and unpack it (:func:`pack_code`,
:func:`unpack_code`) instead of sharing a file system.

Nodes follow each other through :meth:`Registry.add_listener`: a backend
shared by several nodes calls its listeners when another node changed what an
app serves (its current revision, its deletion, its route grants), and with
``None`` whenever it may have missed such a change (reconcile everything). The
embedded backend has one node, so its listeners are never called.
"""

from __future__ import annotations

import abc
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import PayloadTooLarge

#: A revision's code is small (an upload is capped far below this); the cap keeps
#: one bad row from filling a node's memory when it is fetched.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024

#: Told the app whose serving changed on another node, or None: reconcile every app.
Listener = Callable[[str | None], None]


@dataclass(frozen=True)
class RevisionRow:
    app: str
    revision: str
    manifest: dict
    code_dir: str
    env_key: str
    created: float


class Registry(abc.ABC):
    """What the platform knows about its apps. Thread-safe; every method is atomic."""

    @abc.abstractmethod
    def put_revision(self, row: RevisionRow) -> None:
        """Store a revision; one already stored (same app and id) is kept as it is."""

    @abc.abstractmethod
    def set_current(self, app: str, revision: str) -> None:
        """Make ``revision`` the app's live one (registering the app)."""

    @abc.abstractmethod
    def current(self, app: str) -> str | None: ...

    @abc.abstractmethod
    def apps(self) -> list[tuple[str, str]]:
        """(name, current revision) of every app, by name."""

    @abc.abstractmethod
    def revision(self, app: str, revision: str) -> RevisionRow | None: ...

    @abc.abstractmethod
    def revisions(self, app: str) -> list[RevisionRow]:
        """The app's revisions, oldest first."""

    @abc.abstractmethod
    def uid_for(self, app: str) -> int:
        """The app's own uid, allocated once and kept; never one released before."""

    @abc.abstractmethod
    def release_uid(self, app: str) -> None:
        """Retire the app's uid: a later app of the same name gets a fresh one."""

    @abc.abstractmethod
    def delete_app(self, app: str) -> None:
        """Forget the app's registry row, revisions, bundles and route grants at once."""

    @abc.abstractmethod
    def grant_route(self, app: str, host: str | None, path: str) -> None: ...

    @abc.abstractmethod
    def revoke_route(self, app: str, host: str | None, path: str) -> bool: ...

    @abc.abstractmethod
    def route_grants(self, app: str | None = None) -> list[dict]:
        """Grants (of one app, or all) as dicts with app, host (None: any), path, created."""

    @abc.abstractmethod
    def put_bundle(self, app: str, revision: str, data: bytes) -> None:
        """Store the revision's code bundle (see :func:`pack_code`); replaces one stored."""

    @abc.abstractmethod
    def bundle(self, app: str, revision: str) -> bytes | None: ...

    @abc.abstractmethod
    def has_bundle(self, app: str, revision: str) -> bool:
        """Whether the revision's bundle is stored (without fetching it)."""

    def add_listener(self, callback: Listener) -> None:  # noqa: B027 - one node: none to hear
        """Call ``callback(app)`` (from a thread of the backend) after another node
        changed what ``app`` serves: :meth:`set_current`, :meth:`delete_app`,
        :meth:`grant_route`, :meth:`revoke_route`; and ``callback(None)`` whenever
        changes may have been missed (at first, and after a lost connection)."""

    def forget_host_uid(self, app: str) -> None:  # noqa: B027 - one node: release_uid did it
        """Another node deleted the app (and released its uid there): release this
        host's claim of the uid too."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


def pack_code(code_dir: str | Path) -> bytes:
    """The directory's files as a gzipped tar, paths relative to it, owners dropped,
    without ``__pycache__`` (bytecode is for the interpreter of the node that made it;
    the node that unpacks compiles its own)."""
    root = Path(code_dir)
    buf = io.BytesIO()

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.relative_to(root).parts:
                continue
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False,
                    filter=anonymous)
    data = buf.getvalue()
    if len(data) > MAX_BUNDLE_BYTES:
        raise PayloadTooLarge(f"the code of {root} packs to {len(data)} bytes, over the "
                              f"{MAX_BUNDLE_BYTES}-byte bundle limit", limit=MAX_BUNDLE_BYTES)
    return data


def unpack_code(data: bytes, dest: str | Path, *, max_bytes: int | None = None,
                max_files: int | None = None) -> Path:
    """Unpack a bundle into ``dest`` with tarfile's ``data`` filter: no absolute
    paths, no ``..``, no links out of ``dest``, no device files or set-uid bits
    (a bundle is read back from a database another node wrote). ``max_bytes`` and
    ``max_files`` bound what it expands to (the deploy's limits), checked before
    anything is written: a small bundle may expand a thousandfold."""
    dest = Path(dest)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()  # reads the stream once; sizes come from the headers
        if max_files is not None and len(members) > max_files:
            raise PayloadTooLarge(f"the bundle holds {len(members)} entries, over the limit of "
                                  f"{max_files} (SKIFF_MAX_APP_FILES)", code="app_too_large")
        size = sum(m.size for m in members if m.isfile())
        if max_bytes is not None and size > max_bytes:
            raise PayloadTooLarge(f"the bundle expands to {size} bytes, over the limit of "
                                  f"{max_bytes} (SKIFF_MAX_APP_BYTES)", code="app_too_large")
        dest.mkdir(parents=True, exist_ok=True)
        tar.extractall(dest, members=members, filter="data")
    return dest
