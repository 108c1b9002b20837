"""Configuration, resolved once into a frozen object:
argument > ``SKIFF_*`` environment variable > default."""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

#: A node name goes into a response header and log lines: hostname-like text only.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SKIFF_{name}", default)


def _entries(value: object) -> tuple[str, ...]:
    """A list setting: a sequence, or one string of entries split by commas or spaces."""
    if isinstance(value, str):
        return tuple(e for e in value.replace(",", " ").split() if e)
    return tuple(str(e) for e in value)  # type: ignore[attr-defined]


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
    # egress: what no manifest can grant is reachable only through this allowance
    # (addresses or CIDR blocks with an optional :port; see skiff.egress.guard)
    egress_allow: tuple[str, ...] = ()
    egress_max_connections: int = 0  # all apps together; 0: half the process's fds, 2 each
    egress_max_connections_per_app: int = 64  # any phase, idle ones waiting for a head too
    egress_idle_timeout: float = 300.0  # seconds a relay may carry no byte
    # app output kept in skiff.db: an app printing at the line-rate limit wrote 16 MB/s
    log_retention_days: float = 7.0
    log_max_lines_per_app: int = 100_000
    log_max_mb_per_app: float = 64.0
    # the host-wide registry of app uids, shared by every home (used when root)
    uid_registry: Path = Path("/var/lib/skiff/uids.db")
    # seconds an app's init may take, in an instance or (pre-initialized) in its zygote
    init_timeout: float = 60.0
    # async invocations accepted and not yet settled, per app: any client that reaches an
    # app may ask for them, and each is kept on disk until it runs
    async_max_pending_per_app: int = 10_000
    # workflows (skiff.platform.workflows): AWS's quotas by default. Executions running at
    # once on a node (each holds its state in memory); events in one history; bytes of an
    # execution's input, a state's output or a task's result
    sfn_max_running: int = 10_000
    sfn_max_history_events: int = 25_000
    sfn_max_payload_bytes: int = 262_144
    # how long an instance asked to stop (idle, replaced, shut down) may take before
    # it is killed whole; it counts against maxInstances until then
    stop_grace: float = 10.0
    # a streamed response (SSE, a generator) is bounded by these, not the request timeout:
    # seconds with no chunk from the app, and seconds in all, before it is cut
    stream_idle_timeout: float = 60.0
    stream_max_seconds: float = 3600.0
    # WebSockets (ASGI apps): seconds with no message either way before a connection is
    # closed (1001), connections one app may hold open, and the largest message either
    # way (bytes; a bigger one closes the connection with 1009)
    ws_idle_timeout: float = 300.0
    ws_max_connections: int = 256
    ws_max_message_bytes: int = 1 << 20
    # the HTTP edge (see skiff.edge): who may set X-Forwarded-*, and what one client may hold
    forwarded_allow_ips: str = ""  # comma-separated IPs/CIDRs of trusted proxies; "" = none
    max_header_bytes: int = 32 * 1024  # request line + headers, as nginx's default buffers
    header_timeout: float = 10.0  # seconds from connect (or keep-alive) to a complete head
    max_connections: int = 0  # 0: half the open-files limit (the rest is for instances)
    static_cache_bytes: int = 64 * 1024 * 1024  # small static files held, over all apps
    max_buffered_bytes: int = 512 * 1024 * 1024  # request bodies held at once, over all
    # deploy uploads
    max_app_bytes: int = 250 * 1024 * 1024  # expanded size; Lambda's unzipped limit
    max_app_files: int = 10_000
    # where the platform's state lives (skiff.storage): "" is sqlite:///<home>/skiff.db;
    # postgresql://... is the shared engine of several nodes
    database_url: str = ""
    # AWS_REGION / AWS_DEFAULT_REGION in every instance (boto3 and Powertools need one)
    aws_region: str = "us-east-1"
    # this node among the nodes of one database: in the start line, /_skiff/api/health and
    # the X-Skiff-Node header (a load balancer's health check tells nodes apart by it)
    node_name: str = ""  # "": the hostname and the port (or the pid, for port 0)

    # governance: OIDC sign-in for the admin API (skiff.governance.oidc); "" = off
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_groups_claim: str = "groups"  # the claim whose values are the caller's groups
    oidc_roles: tuple[str, ...] = ()  # GROUP=ROLE entries: the role of OIDC callers
    oidc_default_role: str = "viewer"  # an OIDC caller in no mapped group
    # the built-in policy pack's limits (skiff.governance.admission.Limits)
    policy_max_ttl_days: int = 90
    policy_approved_hosts: tuple[str, ...] = ()  # empty: the egress-host policy is off
    policy_approved_templates: tuple[str, ...] = ()  # empty: any templateRef (or none) passes
    # the dependency audit at deploy (skiff.governance.advisories): an OSV-protocol service
    advisory_url: str = "https://api.osv.dev"  # "off": no audit
    # TTL (skiff.governance.lifecycle): days an app without spec.ttlDays lives after its last
    # deploy or renewal (0: it does not expire); where its expiry reminders go
    default_ttl_days: int = 60
    on_expiry: str = "archive"  # or "throttle": 429 app_expired until renewed
    notify_webhook: str = ""  # a URL that gets each reminder as a CloudEvent (JSON POST)
    smtp_url: str = ""  # smtp://[user:pass@]host[:port] or smtps://...
    notify_email: tuple[str, ...] = ()  # the addresses reminders are mailed to
    notify_from: str = "skiff@localhost"
    notify_slack_webhook: str = ""  # a URL that gets {"text": ...} (Slack-compatible)
    alert_every: float = 60.0  # seconds between alert evaluations; 0: only when asked (API)
    # approvals (skiff.governance.approvals): hold deploys that ask for more scopes
    approvals: bool = False
    # quotas per owner (skiff.governance.quotas; 0: no limit): apps, memoryMB of one app,
    # maxInstances summed over the owner's apps
    quota_apps: int = 0
    quota_memory_mb: int = 0
    quota_instances: int = 0
    # the machine's price for the cost model (skiff.observe.cost; None: its file's)
    cost_core_hour: float | None = None
    cost_gib_hour: float | None = None

    # observe: GET /metrics (behind a bearer token when one is set), the terminal's
    # access and app lines on `skiff up` / `skiff dev`
    metrics: bool = True
    metrics_token: str = field(default="", repr=False)
    access_log: bool = True

    def __post_init__(self) -> None:
        if not self.node_name:
            object.__setattr__(self, "node_name", default_node_name(self.port))

    @classmethod
    def resolve(cls, **overrides: object) -> Config:
        given = {k: v for k, v in overrides.items() if v is not None}
        home = Path(given.pop("home", None) or _env("HOME", ".skiff")).resolve()
        envs = given.pop("envs_dir", None) or os.environ.get("SKIFF_ENVS_DIR")
        port = int(given.pop("port", _env("PORT", "8080")))  # type: ignore[call-overload]
        return cls(
            home=home,
            host=str(given.pop("host", _env("HOST", "127.0.0.1"))),
            port=port,
            max_body_bytes=int(given.pop("max_body_bytes", _env("MAX_BODY_BYTES", str(6 << 20)))),  # type: ignore[arg-type]
            spares=int(given.pop("spares", _env("SPARES", "2"))),  # type: ignore[arg-type]
            envs_dir=Path(envs).resolve() if envs else home / "envs",  # type: ignore[arg-type]
            offline=bool(given.pop("offline", _env("OFFLINE", "0") == "1")),
            tick_seconds=float(given.pop("tick_seconds", _env("TICK_SECONDS", "0.5"))),  # type: ignore[arg-type]
            egress_allow=_entries(given.pop("egress_allow", None) or _env("EGRESS_ALLOW", "")),
            egress_max_connections=int(given.pop(  # type: ignore[call-overload]
                "egress_max_connections", _env("EGRESS_MAX_CONNECTIONS", "0"))),
            egress_max_connections_per_app=int(given.pop(  # type: ignore[call-overload]
                "egress_max_connections_per_app", _env("EGRESS_MAX_CONNECTIONS_PER_APP", "64"))),
            egress_idle_timeout=float(given.pop(  # type: ignore[arg-type]
                "egress_idle_timeout", _env("EGRESS_IDLE_TIMEOUT", "300"))),
            log_retention_days=float(given.pop("log_retention_days",  # type: ignore[arg-type]
                                               _env("LOG_RETENTION_DAYS", "7"))),
            log_max_lines_per_app=int(given.pop("log_max_lines_per_app",  # type: ignore[arg-type]
                                                _env("LOG_MAX_LINES_PER_APP", "100000"))),
            log_max_mb_per_app=float(given.pop("log_max_mb_per_app",  # type: ignore[arg-type]
                                               _env("LOG_MAX_MB_PER_APP", "64"))),
            uid_registry=Path(given.pop("uid_registry", None)  # type: ignore[arg-type]
                              or _env("UID_REGISTRY", "/var/lib/skiff/uids.db")),
            init_timeout=float(given.pop("init_timeout", _env("INIT_TIMEOUT", "60"))),  # type: ignore[arg-type]
            async_max_pending_per_app=int(given.pop(  # type: ignore[call-overload]
                "async_max_pending_per_app", _env("ASYNC_MAX_PENDING_PER_APP", "10000"))),
            stop_grace=float(given.pop("stop_grace", _env("STOP_GRACE", "10"))),  # type: ignore[arg-type]
            stream_idle_timeout=float(given.pop(  # type: ignore[arg-type]
                "stream_idle_timeout", _env("STREAM_IDLE_TIMEOUT", "60"))),
            stream_max_seconds=float(given.pop(  # type: ignore[arg-type]
                "stream_max_seconds", _env("STREAM_MAX_SECONDS", "3600"))),
            ws_idle_timeout=float(given.pop(  # type: ignore[arg-type]
                "ws_idle_timeout", _env("WS_IDLE_TIMEOUT", "300"))),
            ws_max_connections=int(given.pop(  # type: ignore[call-overload]
                "ws_max_connections", _env("WS_MAX_CONNECTIONS", "256"))),
            ws_max_message_bytes=int(given.pop(  # type: ignore[call-overload]
                "ws_max_message_bytes", _env("WS_MAX_MESSAGE_BYTES", str(1 << 20)))),
            sfn_max_running=int(given.pop("sfn_max_running", _env("SFN_MAX_RUNNING", "10000"))),  # type: ignore[arg-type]
            sfn_max_history_events=int(given.pop(  # type: ignore[call-overload]
                "sfn_max_history_events", _env("SFN_MAX_HISTORY_EVENTS", "25000"))),
            sfn_max_payload_bytes=int(given.pop(  # type: ignore[call-overload]
                "sfn_max_payload_bytes", _env("SFN_MAX_PAYLOAD_BYTES", "262144"))),
            forwarded_allow_ips=str(given.pop("forwarded_allow_ips",
                                              _env("FORWARDED_ALLOW_IPS", ""))).strip(),
            max_header_bytes=int(given.pop("max_header_bytes", _env("MAX_HEADER_BYTES", str(32 << 10)))),  # type: ignore[arg-type]
            header_timeout=float(given.pop("header_timeout", _env("HEADER_TIMEOUT", "10"))),  # type: ignore[arg-type]
            max_connections=int(given.pop("max_connections", _env("MAX_CONNECTIONS", "0"))),  # type: ignore[arg-type]
            max_buffered_bytes=int(given.pop("max_buffered_bytes", _env("MAX_BUFFERED_BYTES", str(512 << 20)))),  # type: ignore[arg-type]
            static_cache_bytes=int(given.pop("static_cache_bytes", _env("STATIC_CACHE_BYTES", str(64 << 20)))),  # type: ignore[arg-type]
            max_app_bytes=int(given.pop("max_app_bytes", _env("MAX_APP_BYTES", str(250 << 20)))),  # type: ignore[arg-type]
            max_app_files=int(given.pop("max_app_files", _env("MAX_APP_FILES", "10000"))),  # type: ignore[arg-type]
            database_url=str(given.pop("database_url", _env("DATABASE_URL", ""))).strip(),
            aws_region=str(given.pop("aws_region", _env("AWS_REGION", "us-east-1"))).strip(),
            node_name=str(given.pop("node_name", None) or _env("NODE_NAME", "")).strip(),
            oidc_issuer=str(given.pop("oidc_issuer", _env("OIDC_ISSUER", ""))).strip(),
            oidc_audience=str(given.pop("oidc_audience", _env("OIDC_AUDIENCE", ""))).strip(),
            oidc_groups_claim=str(given.pop("oidc_groups_claim",
                                            _env("OIDC_GROUPS_CLAIM", "groups"))).strip(),
            oidc_roles=_entries(given.pop("oidc_roles", None) or _env("OIDC_ROLES", "")),
            oidc_default_role=str(given.pop("oidc_default_role",
                                            _env("OIDC_DEFAULT_ROLE", "viewer"))).strip(),
            policy_max_ttl_days=int(given.pop("policy_max_ttl_days",  # type: ignore[call-overload]
                                              _env("POLICY_MAX_TTL_DAYS", "90"))),
            policy_approved_hosts=_entries(given.pop("policy_approved_hosts", None)
                                           or _env("POLICY_APPROVED_HOSTS", "")),
            policy_approved_templates=_entries(given.pop("policy_approved_templates", None)
                                               or _env("POLICY_APPROVED_TEMPLATES", "")),
            advisory_url=str(given.pop("advisory_url",
                                       _env("ADVISORY_URL", "https://api.osv.dev"))).strip(),
            metrics=bool(given.pop("metrics", _env("METRICS", "1") != "0")),
            metrics_token=str(given.pop("metrics_token", _env("METRICS_TOKEN", ""))).strip(),
            access_log=bool(given.pop("access_log", _env("ACCESS_LOG", "1") != "0")),
            default_ttl_days=int(given.pop("default_ttl_days",  # type: ignore[call-overload]
                                           _env("DEFAULT_TTL_DAYS", "60"))),
            on_expiry=str(given.pop("on_expiry", _env("ON_EXPIRY", "archive"))).strip(),
            notify_webhook=str(given.pop("notify_webhook", _env("NOTIFY_WEBHOOK", ""))).strip(),
            smtp_url=str(given.pop("smtp_url", _env("SMTP_URL", ""))).strip(),
            notify_email=_entries(given.pop("notify_email", None) or _env("NOTIFY_EMAIL", "")),
            notify_from=str(given.pop("notify_from",
                                      _env("NOTIFY_FROM", "skiff@localhost"))).strip(),
            notify_slack_webhook=str(given.pop("notify_slack_webhook",
                                               _env("NOTIFY_SLACK_WEBHOOK", ""))).strip(),
            alert_every=float(given.pop("alert_every",  # type: ignore[arg-type]
                                        _env("ALERT_EVERY_SECONDS", "60"))),
            approvals=bool(given.pop("approvals", _env("APPROVALS", "0") in ("1", "on", "true"))),
            quota_apps=int(given.pop("quota_apps", _env("QUOTA_APPS", "0"))),  # type: ignore[call-overload]
            quota_memory_mb=int(given.pop("quota_memory_mb",  # type: ignore[call-overload]
                                          _env("QUOTA_MEMORY_MB", "0"))),
            quota_instances=int(given.pop("quota_instances",  # type: ignore[call-overload]
                                          _env("QUOTA_INSTANCES", "0"))),
            cost_core_hour=_price(given.pop("cost_core_hour", None) or _env("COST_CORE_HOUR", "")),
            cost_gib_hour=_price(given.pop("cost_gib_hour", None) or _env("COST_GIB_HOUR", "")),
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


def _price(value: object) -> float | None:
    return float(value) if value not in (None, "") else None  # type: ignore[arg-type]


def default_node_name(port: int) -> str:
    """The hostname and the port, or the pid when the port is picked at bind time (0):
    two nodes on one machine differ either way."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100].lstrip("._-") or "node"
    return f"{host}:{port}" if port else f"{host}-{os.getpid()}"
