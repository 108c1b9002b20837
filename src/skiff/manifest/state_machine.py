"""``kind: StateMachine``: an Amazon States Language definition as a Skiff resource.

    apiVersion: skiff.dev/v1
    kind: StateMachine
    metadata: {name: order-saga, owner: group:shop}
    spec:
      type: STANDARD                      # or EXPRESS
      definitionFile: saga.asl.json       # or definition: {StartAt: ..., States: ...}
      app: shop                           # the app it acts as (queues, KV, events)
      triggers: [{schedule: rate(1 hour)}, {event: {type: [order.placed]}}, {queue: orders},
                 {http: {path: /checkout}}]      # POST /shop/checkout

The definition itself is checked by the ASL validator at deploy (skiff.workflows), not
here: this model only says where it is. Its revision is the hash of the definition and
the type, so deploying the same one again changes nothing and a rollback names one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StringConstraints, ValidationError, model_validator

from ..errors import ManifestError
from .errors import problems_from, raise_problems, show
from .model import API_VERSION, Trigger, _Model

KIND = "StateMachine"
#: AWS's state machine names, narrowed to what is safe in an ARN, a URL and a file name.
MachineName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")]


class MachineMetadata(_Model):
    name: MachineName = Field(description="State machine name: letters, digits, '-' and "
                                          "'_', at most 80; the last part of its ARN.")
    owner: str | None = Field(None, description="Who answers for it: user:NAME or group:NAME.")
    labels: dict[str, str] = Field(default_factory=dict)


class MachineRoute(_Model):
    """An HTTP route of the machine's app that starts an execution (the body is its
    input), as API Gateway's StartExecution integration does."""

    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~!$&'()*,;=:@/-]*$")] = Field(
        description='Relative to the app, e.g. "/checkout" (POST /<app>/checkout).')
    methods: tuple[Literal["GET", "POST", "PUT", "PATCH", "DELETE"], ...] = Field(
        ("POST",), description="The methods that start it (default POST).")


class MachineTrigger(Trigger):
    """A trigger of a state machine: an app's (a queue, a schedule, an event rule), or an
    HTTP route of its app."""

    http: MachineRoute | None = Field(None, description="An HTTP route of the machine's "
                                                        "app that starts an execution.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> MachineTrigger:
        given = [k for k in ("queue", "schedule", "event", "http") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of queue, schedule, event or http, not "
                             + (" and ".join(given) or "none"))
        if self.http is None:
            super()._exactly_one_source()
        return self


class MachineSpec(_Model):
    type: Literal["STANDARD", "EXPRESS"] = Field(
        "STANDARD", description="STANDARD: durable, resumes after a crash; EXPRESS: in "
                                "memory, at-least-once (as on AWS).")
    definition: dict[str, Any] | None = Field(None, description="The ASL definition inline.")
    definition_file: str | None = Field(None, description="A .asl.json file beside skiff.yaml.")
    app: str | None = Field(None, description="The app the machine belongs to and acts as: "
                                              "its service integrations reach that app's KV, "
                                              "the queues it may send to, and machines of the "
                                              "same app. Its owners deploy the machine.")
    triggers: tuple[MachineTrigger, ...] = Field(
        (), description="What starts an execution: a queue of its app (the SQS-shaped "
                        "batch is the input), a schedule, an event rule, or an HTTP route "
                        "of its app (the JSON body is the input).")

    @model_validator(mode="after")
    def _one_definition(self) -> MachineSpec:
        if (self.definition is None) == (self.definition_file is None):
            raise ValueError("give exactly one of definition and definitionFile")
        return self


class StateMachineManifest(_Model):
    api_version: Literal["skiff.dev/v1"] = Field(description="Schema version of this file.")
    kind: Literal["StateMachine"]
    metadata: MachineMetadata
    spec: MachineSpec

    @property
    def name(self) -> str:
        return self.metadata.name


def resource_kind(directory: Path) -> str | None:
    """The ``kind`` a directory's skiff.yaml declares (None when it cannot be read: the
    app loader then reports why)."""
    try:
        data = yaml.safe_load((Path(directory) / "skiff.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data.get("kind") if isinstance(data, dict) else None


def load_state_machine(directory: Path) -> tuple[StateMachineManifest, str]:
    """The manifest and the definition's JSON text; a ManifestError says what is wrong
    (a definitionFile outside the directory, missing, or not JSON)."""
    directory = Path(directory)
    source = str(directory / "skiff.yaml")
    try:
        data = yaml.safe_load((directory / "skiff.yaml").read_text(encoding="utf-8"))
        manifest = StateMachineManifest.model_validate(data)
    except ValidationError as exc:
        raise_problems(source, problems_from(exc, StateMachineManifest))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"{source}: cannot read it: {exc}") from None
    if manifest.api_version != API_VERSION:  # pragma: no cover - the Literal says it
        raise ManifestError(f"{source}: apiVersion must be {API_VERSION}")
    if manifest.spec.definition is not None:
        return manifest, json.dumps(manifest.spec.definition)
    name = manifest.spec.definition_file or ""
    file = (directory / name).resolve()
    if directory.resolve() not in file.parents:
        raise_problems(source, [(("spec", "definitionFile"),
                                 f"expected a file inside the directory, got {show(name)}")])
    try:
        text = file.read_text(encoding="utf-8")
        json.loads(text)
    except OSError:
        raise_problems(source, [(("spec", "definitionFile"), f"file not found: {show(name)}")])
    except (UnicodeDecodeError, ValueError) as exc:
        raise_problems(source, [(("spec", "definitionFile"),
                                 f"expected an ASL JSON file, got {show(name)} ({exc})")])
    return manifest, text
