"""Secrets: encrypted at rest, versioned, never shown.

An app declares ``{name: ENV_VAR, ref: secret://NAME}``; the value lives here,
not in its code or skiff.yaml. Each ``set`` adds a version (rotation keeps the
history, so a revision can pin ``secret://NAME#3`` and roll back). Values are
sealed with AES-256-GCM under one master key; the associated data binds each
ciphertext to its name and version, so rows copied or swapped in the database
fail to open instead of handing one secret out under another's name.

The master key comes from ``$SKIFF_MASTER_KEY`` (base64 of 32 bytes) or from
``<home>/master.key``, created 0600 on first use; a key file that group or
others can read is refused rather than trusted.

    SkiffError
    ├── NotFound
    │   └── SecretNotFound     404 secret_not_found      no such secret or version
    ├── InvalidSecret          422 invalid_secret_name   name is not ^[a-z0-9][a-z0-9._-]*$
    │                              invalid_secret_ref    ref is not secret://NAME[#VERSION]
    ├── PayloadTooLarge
    │   └── SecretTooLarge     413 secret_too_large
    ├── SecretCorrupt          500 secret_corrupt        a ciphertext does not open
    └── MasterKeyError         500 master_key_invalid    not base64 of 32 bytes
                                   master_key_unsafe     key file readable by group/others
                                   master_key_mismatch   the store was sealed with another key
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import NotFound, PayloadTooLarge, SkiffError
from .secret_rows import SecretRows, SQLiteSecretRows

KEY_ENV = "SKIFF_MASTER_KEY"
KEY_FILE = "master.key"
MAX_VALUE_BYTES = 64 * 1024
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REF = re.compile(r"^secret://(?P<name>[^#]*)(?:#(?P<version>[0-9]+))?$")
_CHECK_AAD = b"skiff-master-key-check"


class SecretNotFound(NotFound):
    code = "secret_not_found"


class InvalidSecret(SkiffError):
    status = 422
    code = "invalid_secret_name"


class SecretTooLarge(PayloadTooLarge):
    code = "secret_too_large"


class SecretCorrupt(SkiffError):
    status = 500
    code = "secret_corrupt"


class MasterKeyError(SkiffError):
    status = 500
    code = "master_key_invalid"


# -- the master key -----------------------------------------------------------------------------


def generate_master_key() -> str:
    """A new master key in the form ``$SKIFF_MASTER_KEY`` and the key file take."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def decode_master_key(text: str, *, source: str) -> bytes:
    """The 32 key bytes of a base64 (standard or URL-safe) master key."""
    text = text.strip()
    altchars = b"-_" if "-" in text or "_" in text else None
    try:
        key = base64.b64decode(text.encode(), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise MasterKeyError(f"{source} is not a master key: expected base64 of 32 bytes "
                             "(make one with `python -c \"import base64, os; "
                             "print(base64.b64encode(os.urandom(32)).decode())\"`)",
                             source=source)
    return key


def load_master_key(home: str | os.PathLike[str], *,
                    environ: Mapping[str, str] | None = None) -> bytes:
    """``$SKIFF_MASTER_KEY`` if set, else ``<home>/master.key``, created 0600 on first use."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return decode_master_key(env[KEY_ENV], source=f"${KEY_ENV}")
    path = Path(home) / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    """Write a new key beside ``path`` and link it into place, so two processes starting
    at once agree on one key and neither reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(generate_master_key() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(temp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        temp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise MasterKeyError(f"cannot open master key file {path}: {exc.strerror}",
                             path=str(path)) from None
    with os.fdopen(fd) as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} is readable by group or others (mode {mode:04o}); "
                f"run `chmod 600 {path}`, or set ${KEY_ENV}", code="master_key_unsafe",
                path=str(path))
        return decode_master_key(f.read(), source=str(path))


# -- the store ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    latest_version: int
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class SecretVersion:
    version: int
    created: float


class ResolvedSecret(NamedTuple):
    """``(name, version, value)`` from ``resolve_ref``; its repr hides the value."""

    name: str
    version: int
    value: str

    def __repr__(self) -> str:
        return f"ResolvedSecret(name={self.name!r}, version={self.version}, value='***')"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``secret://NAME`` → (NAME, None); ``secret://NAME#3`` → (NAME, 3)."""
    match = _REF.match(ref)
    if not match or not NAME_PATTERN.match(match["name"]) or match["version"] == "0":
        raise InvalidSecret(f'expected a secret reference like "secret://orders-db" or '
                            f'"secret://orders-db#3", got "{ref}"', code="invalid_secret_ref",
                            ref=ref)
    return match["name"], int(match["version"]) if match["version"] else None


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or len(name) > 253:
        raise InvalidSecret(f'expected a secret name of lowercase letters, digits, ".", "_" and '
                            f'"-", starting with a letter or digit, got "{name}"', name=name)
    return name


def _aad(name: str, version: int) -> bytes:
    return f"skiff-secret\x00{name}\x00{version}".encode()


class SecretStore:
    """Versioned secrets over a :class:`~skiff.governance.secret_rows.SecretRows`
    backend: a path opens the embedded SQLite file (WAL; safe across threads and
    processes), or pass rows of the shared database. Opening checks the key
    against a sealed canary, so a wrong master key fails at once and clearly.
    """

    def __init__(self, path: str | os.PathLike[str] | SecretRows, key: bytes) -> None:
        if len(key) != 32:
            raise MasterKeyError("the master key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self.rows: SecretRows
        if isinstance(path, SecretRows):  # the caller's rows: closed with this store
            self.rows = path
            self.path = Path(str(getattr(path, "path", "<database>")))
            self._check_key()
            return
        self.path = Path(path)
        self.rows = SQLiteSecretRows(self.path)
        try:
            self._check_key()
        except BaseException:
            self.rows.close()
            raise

    @classmethod
    def open(cls, home: str | os.PathLike[str], *,
             environ: Mapping[str, str] | None = None,
             rows: SecretRows | None = None) -> SecretStore:
        """The store of a Skiff home: ``<home>/secrets.db`` (or ``rows``) under the
        home's master key."""
        return cls(rows if rows is not None else Path(home) / "secrets.db",
                   load_master_key(home, environ=environ))

    def _check_key(self) -> None:
        def canary() -> tuple[bytes, bytes]:
            nonce = os.urandom(12)
            return nonce, self._aead.encrypt(nonce, b"ok", _CHECK_AAD)

        nonce, sealed = self.rows.meta("check", canary)
        try:
            self._aead.decrypt(nonce, sealed, _CHECK_AAD)
        except InvalidTag:
            raise MasterKeyError(
                f"the secret store {self.path} was sealed with a different master key; "
                f"set ${KEY_ENV} (or restore {KEY_FILE}) to the key it was created with",
                code="master_key_mismatch", path=str(self.path)) from None

    # -- API ----------------------------------------------------------------------------------

    def set(self, name: str, value: str) -> int:
        """Store ``value`` as the newest version of ``name``; returns that version (1 first)."""
        return self._add(name, value, must_exist=False)

    def rotate(self, name: str, value: str) -> int:
        """Like ``set``, for a secret that must already exist (a typo does not create one)."""
        return self._add(name, value, must_exist=True)

    def _add(self, name: str, value: str, *, must_exist: bool) -> int:
        check_name(name)
        if not isinstance(value, str):
            raise InvalidSecret("a secret value is text", code="invalid_secret_value", name=name)
        plain = value.encode()
        if len(plain) > MAX_VALUE_BYTES:
            raise SecretTooLarge(f"secret {name} is {len(plain)} bytes; the limit is "
                                 f"{MAX_VALUE_BYTES}", name=name, limit=MAX_VALUE_BYTES)
        def seal(version: int) -> tuple[bytes, bytes]:
            nonce = os.urandom(12)
            return nonce, self._aead.encrypt(nonce, plain, _aad(name, version))

        version = self.rows.add(name, seal, must_exist=must_exist)
        if version is None:
            raise _not_found(name)
        return version

    def get(self, name: str, version: int | None = None) -> str:
        """The value of ``name`` at ``version`` (the latest by default)."""
        check_name(name)
        row = self.rows.get(name, version)
        if row is None:
            raise _not_found(name, version, self._latest(name) if version is not None else None)
        found, nonce, ciphertext = row
        try:
            return self._aead.decrypt(nonce, ciphertext, _aad(name, found)).decode()
        except InvalidTag:
            raise SecretCorrupt(f"secret {name} version {found} does not decrypt: it was altered "
                                "or moved in the database; set it again", name=name,
                                version=found) from None

    def versions(self, name: str) -> list[SecretVersion]:
        """Every stored version of ``name``, oldest first."""
        check_name(name)
        rows = self.rows.versions(name)
        if not rows:
            raise _not_found(name)
        return [SecretVersion(v, c) for v, c in rows]

    def list(self) -> list[SecretInfo]:
        """Every secret's name and version history summary, sorted by name; no values."""
        return [SecretInfo(*row) for row in self.rows.names()]

    def delete(self, name: str) -> int:
        """Delete ``name`` with all its versions; returns how many versions went."""
        check_name(name)
        count = self.rows.delete(name)
        if not count:
            raise _not_found(name)
        return count

    def resolve_ref(self, ref: str) -> ResolvedSecret:
        """``secret://NAME`` (latest) or ``secret://NAME#3`` → (name, version, value)."""
        name, version = parse_ref(ref)
        if version is None:
            version = self._latest(name)
            if version is None:
                raise _not_found(name)
        return ResolvedSecret(name, version, self.get(name, version))

    def _latest(self, name: str) -> int | None:
        return self.rows.latest(name)

    def close(self) -> None:
        self.rows.close()

    def __enter__(self) -> SecretStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SecretStore(path={str(self.path)!r})"


def _not_found(name: str, version: int | None = None, latest: int | None = None) -> SecretNotFound:
    if version is None or latest is None:
        message = f"secret {name} does not exist; create it with `skiff secrets set {name}`"
    else:
        message = (f"secret {name} has no version {version} (latest is {latest}); pin an existing "
                   f"version or add one with `skiff secrets set {name}`")
    return SecretNotFound(message, name=name, version=version)
