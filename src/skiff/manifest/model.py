"""The frozen model tree of one skiff.yaml (``apiVersion: skiff.dev/v1``,
``kind: MicroApp``). Python attributes are snake_case; aliases are the YAML's
camelCase, which is also what ``to_dict()`` and the JSON Schema use."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .fields import (
    RESERVED_ENV,
    AppKind,
    AppName,
    BatchWindow,
    Concurrency,
    DiskMB,
    Duration,
    EgressRule,
    EnvName,
    EnvVars,
    Handler,
    HostName,
    LatencyMs,
    MemoryMB,
    MountPath,
    NonNegativeInt,
    Objective,
    PositiveInt,
    RoutePath,
    SecretRef,
    SetupCommand,
    StaticDir,
    Text,
    Timeout,
    expect,
    invalid,
)

API_VERSION = "skiff.dev/v1"
KIND = "MicroApp"


class _Model(BaseModel):
    # extra="forbid" everywhere: a typo must be an error, never a silent default.
    # No populate_by_name: `min_instances:` in YAML is a typo of minInstances.
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel)


class Metadata(_Model):
    """Who the app is: its name (used in URLs and host names), owner and labels."""

    name: AppName = Field(description="App name; lowercase letters, digits and '-'. "
                                      "Used in URLs and host names.")
    owner: Text | None = Field(None, description="Who answers for the app: user:NAME or "
                                                 "group:NAME, a known one once identities are "
                                                 "enabled (any text before).")
    labels: dict[Text, Text] = Field(default_factory=dict,
                                     description="Free-form string labels for search and policies.")


class Route(_Model):
    """An extra way to reach the app: a path prefix, a host name, or both."""

    path: RoutePath | None = Field(None, description="Path prefix, starting with '/'.")
    host: HostName | None = Field(None, description="Host name, e.g. food.example.com.")

    @model_validator(mode="after")
    def _path_or_host(self) -> Route:
        if self.path is None and self.host is None:
            raise invalid("a path, a host or both")
        return self


class StaticSite(_Model):
    """A directory of files served as they are."""

    dir: StaticDir = Field(description="Directory relative to the app directory.")
    path: MountPath = Field("/", description="Where the files are mounted inside the app.")


def _static_shorthand(value: Any) -> Any:
    if isinstance(value, str):  # `static: public` means {dir: public, path: /}
        return {"dir": value}
    if value is not None and not isinstance(value, dict):
        raise invalid("a directory name or a mapping with dir and path")
    return value


class Resources(_Model):
    """Limits of one instance."""

    memory_mb: MemoryMB = Field(256, alias="memoryMB",
                                          description="Memory limit of one instance, in MiB.")
    timeout: Timeout = Field(30.0, description="Longest one invocation may run "
                                                        "(seconds, or '30s', '5m').")
    cpu: Annotated[float, Field(gt=0, le=64)] = Field(
        1.0, description="CPU cores one instance may use (a cgroup quota).")
    max_pids: Annotated[int, Field(ge=4, le=4096)] = Field(
        64, alias="maxPids", description="Processes and threads one instance may run.")
    tmp_mb: Annotated[int, Field(ge=1, le=4096)] = Field(
        64, alias="tmpMB", description="Size of the instance's private, writable /tmp, in MiB.")
    disk_mb: DiskMB | None = Field(
        None, alias="diskMB", description="A persistent, writable data directory of this size "
        "(MiB) for the app, kept across revisions and restarts and archived with the app; "
        "its path is $SKIFF_DATA_DIR. null: none (the code and the rest stay read-only).")


def _cron(value: Any) -> Any:
    from croniter import croniter

    if not isinstance(value, str) or not croniter.is_valid(value) or len(value.split()) != 5:
        raise invalid("a 5-field cron expression such as '0 8 * * 1-5'", value=value)
    return value


class WarmWindow(_Model):
    """Provisioned concurrency on a schedule: keep instances warm inside the window."""

    schedule: Annotated[str, BeforeValidator(_cron)] = Field(
        description="When the window opens: a 5-field cron expression (server local time).")
    duration: Duration = Field(description="How long it stays open (seconds, or '10h').")
    min_instances: PositiveInt = Field(description="Instances kept warm while it is open.")


class Scaling(_Model):
    """How many instances run and how much each takes on."""

    min_instances: NonNegativeInt = Field(0, description="Instances kept warm; 0 scales to zero.")
    max_instances: PositiveInt = Field(10, description="Most instances at once; "
                                                      "beyond them requests queue.")
    concurrency: Concurrency | None = Field(
        None, description="Requests one instance serves at once; null picks 1 for sync "
                          "handlers and many for async ones.")
    idle_timeout: Duration = Field(300.0, description="Idle time after which an instance "
                                                        "stops (seconds, or '5m').")
    max_queue: NonNegativeInt = Field(100, description="Requests that may wait while every "
                                                   "instance is busy.")
    preinit: bool = Field(False, description="Run the app's module init once in an app zygote "
                                             "and fork instances from it (fast cold starts "
                                             "for heavy imports); see skiff.runtime.on_restore.")
    warm: tuple[WarmWindow, ...] = Field((), description="Scheduled windows with more warm "
                                                          "instances.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Scaling:
        if self.min_instances > self.max_instances:
            raise invalid(f"at most maxInstances ({self.max_instances})",
                          at=("minInstances",), value=self.min_instances)
        return self


QueueName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")]


def _schedule(value: Any) -> Any:
    from skiff.bus import InvalidSchedule, parse_schedule

    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("a schedule: rate(5 minutes), cron(0 12 * * ? *) or a 5-field cron",
                      value=value)
    try:
        parse_schedule(value)
    except InvalidSchedule as exc:
        raise invalid(f"a valid schedule ({exc.message})", value=value) from None
    return value


def _pattern(value: Any) -> Any:
    from skiff.bus import InvalidPattern, validate_pattern

    if value is None:
        return None
    try:
        validate_pattern(value)
    except InvalidPattern as exc:
        raise invalid(f"an event pattern ({exc.message})", value=value) from None
    return value


class Trigger(_Model):
    """One source of invocations besides HTTP: a queue, a schedule or an event rule."""

    queue: QueueName | None = Field(None, description="Consume this queue in batches "
                                                      "(SQS-shaped events).")
    batch_size: Annotated[int, Field(ge=1, le=1000)] = Field(10, description="Most messages "
                                                                             "per invocation.")
    max_batching_window: BatchWindow = Field(
        0.0, description="Longest wait to fill a batch (seconds, or '1s').")
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = Field(
        5, description="Deliveries before a message goes to the dead-letter queue.")
    dead_letter_queue: QueueName | None = Field(None, description="Where failed messages go; "
                                                                  "default <queue>-dlq.")
    schedule: Annotated[str | None, BeforeValidator(_schedule)] = Field(
        None, description="rate(5 minutes), AWS cron(0 12 * * ? *), a 5-field cron, or at(...).")
    timezone: str = Field("UTC", description="Time zone of a cron schedule.")
    catch_up: Literal["one", "all", "none"] = Field(
        "one", description="Fires missed while Skiff was down: run one, all, or none.")
    input: Any = Field(None, description="The event a schedule passes (default: an "
                                         "EventBridge scheduled event).")
    event: Annotated[dict[str, Any] | None, BeforeValidator(_pattern)] = Field(
        None, description="An EventBridge-style pattern over published CloudEvents.")
    format: Literal["cloudevent", "eventbridge"] = Field(
        "cloudevent", description="How a matched event reaches the handler.")
    max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="Attempts for an event before its dead-letter queue.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Trigger:
        given = [k for k in ("queue", "schedule", "event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise invalid("exactly one of queue, schedule or event",
                          value=" and ".join(given) or "none")
        if self.schedule is not None:
            from skiff.bus import InvalidSchedule, parse_schedule

            try:
                parse_schedule(self.schedule, self.timezone)
            except InvalidSchedule:
                raise invalid("an IANA time zone such as Europe/Paris", at=("timezone",),
                              value=self.timezone) from None
        return self


class Queue(_Model):
    """A queue this app owns (with its queue triggers, their dead-letter queues and
    <app>-dlq), and which other apps may send to it."""

    name: QueueName = Field(description="Queue name; one app owns it.")
    allow_from: tuple[AppName, ...] = Field((), description="Apps that may send to it with "
                                                            "skiff.sdk (the owner always may).")


_TEMPLATE = re.compile(r"^(/([A-Za-z0-9._~!$&'()*,;=:@-]+|\{[A-Za-z0-9_.:-]+\}))*"
                       r"(/\{[A-Za-z0-9_.:-]+\+\})?/?$")


class ApiRoute(_Model):
    """One route of the app's API, as an API Gateway route: a path template and methods."""

    path: Annotated[str, Field(description='Relative to the app, e.g. "/items/{id}" or '
                                           '"/files/{proxy+}" (the rest of the path).')]
    methods: tuple[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"],
                   ...] = Field((), description="Methods the route takes; none or ANY: all.")

    @field_validator("path")
    @classmethod
    def _template(cls, path: str) -> str:
        if path != "/" and not _TEMPLATE.fullmatch(path):
            raise invalid('a path template such as "/items/{id}" or "/files/{proxy+}" '
                          '(a greedy {name+} only as the last segment)', value=path)
        return path

    @field_validator("methods")
    @classmethod
    def _any(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        return () if "ANY" in methods else tuple(dict.fromkeys(methods))


class Http(_Model):
    """How HTTP requests reach the app's handler."""

    routes: tuple[ApiRoute, ...] = Field(
        (), description="The app's API routes (path parameters, methods), as API Gateway "
                        "routes; a request no route takes is answered 404 (a wrong method 405). "
                        "None: every request reaches the handler ($default).")
    payload_format: Literal["2.0", "1.0"] = Field(
        "2.0", alias="payloadFormat",
        description='The event a Lambda handler gets: "2.0" as from an API Gateway HTTP API, '
                    '"1.0" as from a REST API (httpMethod, multiValueHeaders...).')


class AsyncConfig(_Model):
    """Asynchronous invocation (X-Skiff-Invocation-Type: Event): retries and destinations."""

    max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="Attempts before the on-failure destination (Lambda: 1 + 2 retries).")
    on_success: QueueName | None = Field(None, description="Queue that receives each result.")
    on_failure: QueueName | None = Field(None, description="Queue that receives failed "
                                                           "invocations; default <app>-dlq.")


class Secret(_Model):
    """A secret exposed to the app as an environment variable."""

    name: EnvName = Field(description="Environment variable the value appears in.")
    ref: SecretRef = Field(description="Secret store reference, e.g. secret://orders-db.")


class Slo(_Model):
    """Service level objectives, evaluated as multi-window burn rates (skiff.observe.slo)."""

    availability: Objective | None = Field(
        None, description="Percent of invocations that must not fail (5xx), e.g. 99.5.")
    latency_p95_ms: LatencyMs | None = Field(
        None, alias="latencyP95Ms",
        description="95 % of invocations must answer within this many milliseconds.")

    @model_validator(mode="after")
    def _some_objective(self) -> Slo:
        if self.availability is None and self.latency_p95_ms is None:
            raise invalid(message="give availability (e.g. 99.5), latencyP95Ms (e.g. 300) or "
                                  "both; remove spec.slo for no objective")
        return self
class Check(_Model):
    """A smoke check `skiff test` runs against the deployed app: a request, the status
    it must answer, and optionally a JSON Schema its JSON body must match (a contract)."""

    path: RoutePath = Field(description="Path relative to the app, e.g. /health.")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="The request's method.")
    status: Annotated[int, Field(ge=100, le=599)] = Field(200, description="The status it "
                                                                           "must answer.")
    body_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="A JSON Schema the response's JSON body must match.")


class Spec(_Model):
    """What to run and how."""

    # Declaration order matters: the validators of `static` and `handler`
    # read `kind` (and `secrets` reads `env`) from the fields before them.
    kind: AppKind | None = Field(None, description="lambda, asgi, wsgi or static; "
                                                   "omitted means detected when the app loads.")
    static: Annotated[
        StaticSite | None,
        BeforeValidator(_static_shorthand, json_schema_input_type=str | StaticSite | None),
    ] = Field(None, validate_default=True,
              description="Static files: a directory name, or {dir, path}.")
    handler: Handler | None = Field(None, validate_default=True,
                                    description="Entry point as module:attribute, "
                                                "e.g. app:handler.")
    routes: tuple[Route, ...] = Field((), description="Extra path prefixes and host names.")
    http: Http = Field(default_factory=Http)
    env: EnvVars = Field(default_factory=dict, description="Environment variables; "
                                                           "numbers and booleans become strings.")
    secrets: tuple[Secret, ...] = Field((), description="Secrets exposed as "
                                                        "environment variables.")
    resources: Resources = Field(default_factory=Resources)
    scaling: Scaling = Field(default_factory=Scaling)
    triggers: tuple[Trigger, ...] = Field((), description="Queues, schedules and event "
                                                           "rules that invoke the app.")
    queues: tuple[Queue, ...] = Field((), description="Queues this app owns without (or "
                                                      "besides) consuming them, and who may "
                                                      "send to them.")
    async_: AsyncConfig = Field(default_factory=AsyncConfig, alias="async",
                                description="Retries and destinations of async invocations.")
    isolation: Literal["strict", "standard", "none"] = Field(
        "strict", description="strict: own uid, cgroups, mount/pid/network namespaces, "
                              "seccomp, egress only through the proxy; standard: the same "
                              "with the host's network; none: limits only (development).")
    egress: tuple[EgressRule, ...] = Field(
        (), description="Hosts the app may connect to, e.g. api.example.com or "
                        "*.internal.corp:443.")
    ttl_days: PositiveInt | None = Field(None, description="Days until the app is archived "
                                                          "unless renewed.")
    build: tuple[SetupCommand, ...] = Field(
        (), description="Commands run at deploy, in the app's sandbox, in a writable copy of "
                        "the new revision's code (e.g. python manage.py collectstatic "
                        "--noinput); what they write becomes part of the revision, read-only "
                        "at run time. A failure rejects the deploy.")
    release: tuple[SetupCommand, ...] = Field(
        (), description="Commands run in the app's sandbox, with $SKIFF_DATA_DIR, before a "
                        "new revision takes traffic, on deploy and on rollback (e.g. python "
                        "manage.py migrate); a failure rejects it and the previous revision "
                        "keeps serving.")
    setup_timeout: Timeout = Field(
        300.0, description="Longest one build or release command may run (seconds, or '5m').")
    slo: Slo | None = Field(None, description="Objectives the platform alerts on when their "
                                              "error budget burns too fast.")
    checks: tuple[Check, ...] = Field((), description="Smoke and contract checks `skiff test` "
                                                      "runs against the deployed app.")

    model_config = ConfigDict(json_schema_extra={
        "anyOf": [{"required": ["handler"]}, {"required": ["static"]}],
    })

    @model_validator(mode="before")
    @classmethod
    def _infer_static_kind(cls, data: Any) -> Any:
        # Only static files and no handler can only be a static app; say so
        # now rather than leave it to whoever loads the app.
        if (isinstance(data, dict) and data.get("kind") is None
                and data.get("handler") is None and data.get("static") is not None):
            return {**data, "kind": "static"}
        return data

    @field_validator("static")
    @classmethod
    def _static_when_kind_static(cls, static: StaticSite | None,
                                 info: ValidationInfo) -> StaticSite | None:
        if static is None and info.data.get("kind") == "static":
            raise invalid(message="required when spec.kind is static")
        return static

    @field_validator("handler")
    @classmethod
    def _handler_matches_kind(cls, handler: str | None, info: ValidationInfo) -> str | None:
        if "kind" not in info.data:  # kind itself is invalid and reported
            return handler
        is_static = info.data["kind"] == "static"
        if is_static and handler is not None:
            raise invalid("no handler when spec.kind is static")
        if not is_static and handler is None:
            raise invalid(message="required unless spec.kind is static")
        return handler

    @field_validator("queues")
    @classmethod
    def _queue_names_unique(cls, queues: tuple[Queue, ...]) -> tuple[Queue, ...]:
        seen: set[str] = set()
        for index, queue in enumerate(queues):
            if queue.name in seen:
                raise invalid("a name no other entry uses", at=(index, "name"), value=queue.name)
            seen.add(queue.name)
        return queues

    @field_validator("env")
    @classmethod
    def _env_not_reserved(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if name in RESERVED_ENV:
                raise invalid(message=f"{name} is set by Skiff in every instance (as Lambda "
                              "reserves it); remove it (the operator sets the region with "
                              "SKIFF_AWS_REGION)" if "REGION" in name else
                              f"{name} is set by Skiff in every instance (as Lambda reserves "
                              "it); remove it", at=(name,))
        return env

    @field_validator("secrets")
    @classmethod
    def _secret_names_unique(cls, secrets: tuple[Secret, ...],
                             info: ValidationInfo) -> tuple[Secret, ...]:
        env = info.data.get("env", {})
        seen: set[str] = set()
        for index, secret in enumerate(secrets):
            if secret.name in seen:
                raise invalid("a name no other secret uses", at=(index, "name"), value=secret.name)
            if secret.name in RESERVED_ENV:
                raise invalid(message=f"{secret.name} is set by Skiff in every instance; "
                              "use another name", at=(index, "name"))
            if secret.name in env:
                raise invalid("a name not also set in spec.env", at=(index, "name"),
                              value=secret.name)
            seen.add(secret.name)
        return secrets


class Manifest(_Model):
    """A validated, normalized skiff.yaml. Immutable; ``to_dict()`` is its
    canonical form, hashed into the revision id."""

    api_version: Annotated[Literal["skiff.dev/v1"], expect(f'"{API_VERSION}"')] = Field(
        description="Schema version of this file.")
    kind: Annotated[Literal["MicroApp"], expect(f'"{KIND}"')] = Field(
        description="Resource kind; always MicroApp.")
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: camelCase keys, every default filled in,
        static as {dir, path}, durations as float seconds."""
        out = self.model_dump(mode="json", by_alias=True)
        if out["spec"]["slo"] is None:  # a manifest without one hashes as it did before
            del out["spec"]["slo"]
        if not out["spec"]["checks"]:  # absent when empty: apps without checks keep their ids
            del out["spec"]["checks"]
        return out
