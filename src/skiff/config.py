"""Configuration, resolved once into a frozen object:
argument > ``SKIFF_*`` environment variable > default."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SKIFF_{name}", default)


@dataclass(frozen=True)
class Config:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 6 * 1024 * 1024  # Lambda's synchronous payload limit
    spares: int = 2
    envs_dir: Path | None = None
    offline: bool = False
    tick_seconds: float = 0.5
    # the host-wide registry of app uids, shared by every home (used when root)
    uid_registry: Path = Path("/var/lib/skiff/uids.db")

    @classmethod
    def resolve(cls, **overrides: object) -> Config:
        given = {k: v for k, v in overrides.items() if v is not None}
        home = Path(given.pop("home", None) or _env("HOME", ".skiff")).resolve()
        envs = given.pop("envs_dir", None) or os.environ.get("SKIFF_ENVS_DIR")
        return cls(
            home=home,
            host=str(given.pop("host", _env("HOST", "127.0.0.1"))),
            port=int(given.pop("port", _env("PORT", "8080"))),  # type: ignore[arg-type]
            max_body_bytes=int(given.pop("max_body_bytes", _env("MAX_BODY_BYTES", str(6 << 20)))),  # type: ignore[arg-type]
            spares=int(given.pop("spares", _env("SPARES", "2"))),  # type: ignore[arg-type]
            envs_dir=Path(envs).resolve() if envs else home / "envs",  # type: ignore[arg-type]
            offline=bool(given.pop("offline", _env("OFFLINE", "0") == "1")),
            tick_seconds=float(given.pop("tick_seconds", _env("TICK_SECONDS", "0.5"))),  # type: ignore[arg-type]
            uid_registry=Path(given.pop("uid_registry", None)  # type: ignore[arg-type]
                              or _env("UID_REGISTRY", "/var/lib/skiff/uids.db")),
        )

    def admin_token(self) -> str:
        """The admin API token: $SKIFF_ADMIN_TOKEN, else a file under home made on first use."""
        token = os.environ.get("SKIFF_ADMIN_TOKEN")
        if token:
            return token
        path = self.home / "admin-token"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()
