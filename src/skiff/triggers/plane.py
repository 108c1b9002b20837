"""The event plane: durable async invocation, queue triggers (SQS-shaped
batches with partial-batch failure), event rules over published CloudEvents,
and schedules — all on one at-least-once broker.

Everything accepted is first written to the broker (fsync'd SQLite by
default), then consumed with a lease: a crash of the platform loses nothing,
and work in flight is delivered again when its lease runs out.

Internal queues are named ``skiff:async:<app>`` and ``skiff:rule:<app>:<n>``
(a colon cannot appear in a user's queue name).

Queues belong to apps. An app owns what its manifest declares: its queue
triggers and their dead-letter queues, ``spec.queues``, and ``<app>-dlq`` /
``<app>-events-dlq`` (its async and event-rule dead-letter queues); an async
destination (``async.onSuccess`` / ``onFailure``) no app declares is its user's.
A queue has one owner (a second declaration is refused at deploy). With
``skiff.sdk`` an app may send to its own queues and to a queue whose owner
lists it in ``allowFrom``; the operator (admin API) may send anywhere.
Deleting an app deletes its queues, their messages and its async invocations.

State machines have triggers too (``kind: StateMachine``, ``spec.triggers``): a queue
their app owns, a schedule or an event rule starts an execution instead of invoking an
app. Fires and matched events go through the machine's own queue ``skiff:sfn:<name>``,
durably, and each message starts at most one execution: its name is made from the
message id, so a delivery repeated after a crash finds the execution it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from skiff.bus import (
    Broker,
    Delivery,
    Outgoing,
    backoff,
    due,
    matches,
    parse_batch_response,
    parse_schedule,
    queue_arn,
    to_eventbridge,
    to_sqs_records,
    validate_event,
)
from skiff.errors import Conflict, Forbidden, NotFound, SkiffError, TooManyRequests
from skiff.instance import protocol as p
from skiff.manifest import Manifest
from skiff.manifest.model import Trigger
from skiff.manifest.queues import declared_queues, destinations
from skiff.scheduler import Invocation
from skiff.store.trigger_state import TriggerState
from skiff.triggers.dispatch import Consumer, Dispatcher

Invoke = Callable[[Invocation], Awaitable[p.Response]]
#: (machine, input, execution name) -> None: start an execution, or find the one of that
#: name already started; raises when it could not (the message is delivered again)
StartMachine = Callable[[str, Any, str], Awaitable[None]]
#: how a machine's schedules are keyed apart from apps' (no app or machine name has ':')
MACHINE = "statemachine:"
_requests = msgspec.msgpack.Decoder(p.HttpRequest | p.Event)
_msgpack = msgspec.msgpack.Encoder()


#: How often an async invocation that failed only because another run holds its
#: idempotency key (IdempotencyInProgress) is retried after that run's lease, not
#: counting against maxAttempts. Bounded, since the app's own error says so.
MAX_IN_PROGRESS_WAITS = 5
_IN_PROGRESS = "handler_error: IdempotencyInProgress:"
#: The schedule clock wakes at the next fire, but at least this often, so a step of
#: the wall clock (NTP, a suspended VM) delays a fire by at most this long.
_MAX_SCHEDULE_SLEEP = 60.0
#: ...and at most this often (fires are whole seconds; a fire a hair away is not
#: worth a spin).
_MIN_SCHEDULE_SLEEP = 0.05


def async_queue(app: str) -> str:
    return f"skiff:async:{app}"


def rule_queue(app: str, index: int) -> str:
    return f"skiff:rule:{app}:{index}"


def machine_queue(machine: str) -> str:
    return f"skiff:sfn:{machine}"


def execution_name(message_id: str) -> str:
    """The execution a trigger's message starts: the same for every delivery of it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"skiff-trigger:{message_id}"))


@dataclass
class _AppWiring:
    manifest: Manifest
    consumers: list[str] = field(default_factory=list)  # the queues it consumes
    rules: list[tuple[int, dict, str]] = field(default_factory=list)  # (index, pattern, format)
    queues: dict[str, frozenset[str]] = field(default_factory=dict)  # declared -> allowFrom
    destinations: set[str] = field(default_factory=set)


@dataclass
class _MachineWiring:
    app: str | None
    triggers: tuple[Trigger, ...]
    start: StartMachine
    consumers: list[str] = field(default_factory=list)
    rules: list[tuple[int, dict, str]] = field(default_factory=list)


class FanOutTrace(Protocol):
    """The spans of one publish: ``traceparents`` one per target, in order."""

    traceparents: list[str]

    def end(self, error: str | None) -> None: ...


class PublishTrace(Protocol):
    """Traces publishes: ``targets`` are (app, rule queue); None when not traced."""

    def fan_out(self, event: dict[str, Any],
                targets: list[tuple[str, str]]) -> FanOutTrace | None: ...


class EventPlane:
    """``state`` keeps async statuses and schedule checkpoints; on a shared database
    (several nodes) an invocation's status is the same from every node, and each
    schedule fire is enqueued by one of them. ``trace`` makes the spans of a publish's
    fan-out (the platform's tracing; triggers do not know it)."""

    def __init__(self, broker: Broker, state: TriggerState, invoke: Invoke, *,
                 log: Callable[[str, str], None], max_pending_per_app: int = 10_000,
                 after_fire: Callable[[str], None] | None = None,
                 trace: PublishTrace | None = None) -> None:
        self.broker = broker
        self.trace = trace
        self.state = state
        self._after_fire = after_fire  # an app's schedule fired (metrics count it)
        # async invocations accepted and not settled, per app: the HTTP path takes them
        # from anyone, so they are bounded
        self.max_pending_per_app = max_pending_per_app
        self.invoke = invoke
        self.log = log
        self.apps: dict[str, _AppWiring] = {}
        self.machines: dict[str, _MachineWiring] = {}
        self._scheduler: asyncio.Task | None = None
        self.dispatcher = Dispatcher(broker)
        # (app, schedule key) -> when it fires next (epoch s): the schedule clock sleeps
        # until the earliest instead of looking at every schedule each second
        self._next_fire: dict[tuple[str, str], float] = {}
        self._rewired = asyncio.Event()
        self._held: set[str] = set()  # apps whose queues are not consumed (hold/release)

    # -- wiring ------------------------------------------------------------------
    def start(self) -> None:
        released = self.broker.release_leases()
        if released:
            print(f"skiff: {released} message(s) in flight at the last stop are delivered again",
                  flush=True)
        self._scheduler = asyncio.ensure_future(self._schedules())

    async def stop(self) -> None:
        if self._scheduler:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        await self.dispatcher.close()
        self.apps.clear()
        self.machines.clear()
        self.broker.close()
        self.state.close()

    def wire(self, manifest: Manifest) -> None:
        """(Re)start the consumers of an app after it was (re)activated."""
        name, spec = manifest.name, manifest.spec
        old = self.apps.get(name)
        if old is not None:
            for queue in old.consumers:
                self.dispatcher.remove(queue)
        wiring = _AppWiring(manifest, queues=declared_queues(manifest),
                            destinations=destinations(manifest))
        self.apps[name] = wiring  # replaced, never absent: a send meanwhile sees an owner
        self._forget_fires(name)  # its schedules are looked at afresh (a new one starts now)
        self._rewired.set()
        if not spec.handler:
            return
        # a few parallel consumers, so async work can use more than one instance
        workers = max(1, min(spec.scaling.max_instances, 4))
        self._consume(wiring, async_queue(name), self._async_batch(name), 1, 0.0, workers)
        for index, trig in enumerate(spec.triggers):
            if trig.queue:
                dlq = trig.dead_letter_queue or f"{trig.queue}-dlq"
                self.broker.configure(trig.queue, dead_letter_queue=dlq,
                                      max_receive_count=trig.max_receive_count)
                self._consume(wiring, trig.queue, self._queue_batch(name, trig.queue),
                              trig.batch_size, trig.max_batching_window)
            elif trig.event is not None:
                queue = rule_queue(name, index)
                self.broker.configure(queue, dead_letter_queue=f"{name}-events-dlq",
                                      max_receive_count=trig.max_attempts)
                wiring.rules.append((index, trig.event, trig.format))
                self._consume(wiring, queue, self._rule_batch(name), 1, 0.0)

    def hold(self, app: str) -> None:
        """Stop consuming the app's queues (a budget throttles it): what is queued and
        what arrives waits there, leased by nobody, until :meth:`release`."""
        if app in self._held:
            return
        self._held.add(app)
        wiring = self.apps.get(app)
        for queue in wiring.consumers if wiring is not None else ():
            self.dispatcher.remove(queue)

    def release(self, app: str) -> None:
        """Consume the app's queues again; what waited runs now."""
        if app not in self._held:
            return
        self._held.discard(app)
        wiring = self.apps.get(app)
        if wiring is not None:
            self.wire(wiring.manifest)

    def unwire(self, app: str) -> None:
        wiring = self.apps.pop(app, None)
        self._forget_fires(app)
        if wiring is not None:
            for queue in wiring.consumers:
                self.dispatcher.remove(queue)

    def _forget_fires(self, app: str) -> None:
        # list() copies in one step: the schedule clock's thread may be adding entries
        for key in [k for k in list(self._next_fire) if k[0] == app]:
            self._next_fire.pop(key, None)

    # -- state machines -----------------------------------------------------------------
    @staticmethod
    def machine_triggers(triggers: Sequence[Mapping[str, Any]]) -> tuple[Trigger, ...]:
        return tuple(Trigger.model_validate(t) for t in triggers)

    def check_machine(self, name: str, app: str | None,
                      triggers: Sequence[Mapping[str, Any]]) -> None:
        """Refuse triggers a machine may not have: a queue that is not its app's, or that
        something else consumes already."""
        for trig in self.machine_triggers(triggers):
            if trig.queue is None:
                continue
            owned = self.owner(trig.queue)
            if app is None:
                raise Forbidden(f"state machine {name} may not consume queue {trig.queue!r}: "
                                "it belongs to no app; set spec.app to the app that owns the "
                                "queue", code="queue_forbidden", queue=trig.queue)
            if owned is None or owned[0] != app:
                raise Forbidden(f"state machine {name} may not consume queue {trig.queue!r}: "
                                f"it is not a queue of its app {app}"
                                + (f" but of app {owned[0]}" if owned else "")
                                + " (a machine consumes queues its app declares in "
                                  "spec.queues)", code="queue_forbidden", queue=trig.queue)
            consumers = [f"app {a}" for a, w in self.apps.items() if trig.queue in w.consumers]
            consumers += [f"state machine {m}" for m, w in self.machines.items()
                          if m != name and trig.queue in w.consumers]
            if consumers:
                raise Conflict(f"queue {trig.queue!r} is consumed by {consumers[0]} already: "
                               "a queue has one consumer", code="queue_conflict",
                               queue=trig.queue)

    def wire_machine(self, name: str, app: str | None, triggers: Sequence[Mapping[str, Any]],
                     start: StartMachine) -> None:
        """(Re)wire the triggers of a machine's current revision."""
        self.unwire_machine(name)
        wiring = _MachineWiring(app, self.machine_triggers(triggers), start)
        self.machines[name] = wiring
        self._forget_fires(MACHINE + name)
        self._rewired.set()
        if not wiring.triggers:
            return
        own = machine_queue(name)
        self.broker.configure(own, dead_letter_queue=f"{own}-dlq", max_receive_count=5)
        self._consume_machine(wiring, own, self._machine_starts(name), 1, 0.0)
        for index, trig in enumerate(wiring.triggers):
            if trig.queue:
                dlq = trig.dead_letter_queue or f"{trig.queue}-dlq"
                self.broker.configure(trig.queue, dead_letter_queue=dlq,
                                      max_receive_count=trig.max_receive_count)
                self._consume_machine(wiring, trig.queue, self._machine_batch(name, trig.queue),
                                      trig.batch_size, trig.max_batching_window)
            elif trig.event is not None:
                wiring.rules.append((index, trig.event, trig.format))

    def unwire_machine(self, name: str) -> None:
        wiring = self.machines.pop(name, None)
        self._forget_fires(MACHINE + name)
        if wiring is not None:
            for queue in wiring.consumers:
                self.dispatcher.remove(queue)

    def forget_machine(self, name: str) -> None:
        """A deleted machine: its own queue and schedule checkpoints go (blocking)."""
        self.broker.delete_queue(machine_queue(name))
        self.state.forget_app(MACHINE + name)

    def _consume_machine(self, wiring: _MachineWiring, queue: str,
                         handle: Callable[[list[Delivery]], Awaitable[None]], batch_size: int,
                         window: float) -> None:
        wiring.consumers.append(queue)  # a start is quick: a short lease is enough
        self.dispatcher.add(Consumer(queue, handle, batch_size, window, window + 60.0, 1))

    def _machine_starts(self, machine: str) -> Callable[[list[Delivery]], Awaitable[None]]:
        async def handle(batch: list[Delivery]) -> None:
            for d in batch:
                wiring = self.machines.get(machine)
                if wiring is None:
                    return
                try:
                    await wiring.start(machine, _jsonish(d.body), execution_name(d.message_id))
                except SkiffError as exc:
                    self.log(wiring.app or "", f"state machine {machine}: starting an "
                             f"execution failed (attempt {d.receive_count}): {exc.message}")
                    await asyncio.to_thread(self.broker.nack, d.queue, d.receipt,
                                            delay=backoff(d.receive_count, base=0.5, cap=60.0))
                    continue
                await asyncio.to_thread(self.broker.ack, d.queue, d.receipt)
        return handle

    def _machine_batch(self, machine: str,
                       queue: str) -> Callable[[list[Delivery]], Awaitable[None]]:
        """A queue trigger: one execution per batch, its input the SQS-shaped records."""
        arn = queue_arn(queue)

        async def handle(batch: list[Delivery]) -> None:
            wiring = self.machines.get(machine)
            if wiring is None:
                return
            key = ",".join(sorted(d.message_id for d in batch))
            try:
                await wiring.start(machine, to_sqs_records(batch, arn), execution_name(key))
            except SkiffError as exc:
                self.log(wiring.app or "", f"state machine {machine}: a batch of {len(batch)} "
                         f"from {queue} did not start an execution: {exc.message}")
                for d in batch:
                    await asyncio.to_thread(self.broker.nack, queue, d.receipt,
                                            delay=backoff(d.receive_count, base=0.5, cap=60.0))
                return
            await asyncio.to_thread(self.broker.ack_batch, queue, [d.receipt for d in batch])
        return handle

    # -- ownership --------------------------------------------------------------------
    def owner(self, queue: str) -> tuple[str, frozenset[str]] | None:
        """(owning app, apps allowed to send) of ``queue``; None if no app owns it.
        Called from sdk-call threads while the loop rewires: iterate a copy."""
        apps = list(self.apps.items())
        for app, wiring in apps:
            if queue in wiring.queues:
                return app, wiring.queues[queue]
        users = sorted(app for app, w in apps if queue in w.destinations)
        return (users[0], frozenset()) if users else None

    def check_queues(self, manifest: Manifest) -> None:
        """Refuse a manifest that claims another app's queue, or sends its async results
        to a queue whose owner does not allow it."""
        name = manifest.name
        others = {a: w for a, w in self.apps.items() if a != name}
        mine = self.apps[name].queues if name in self.apps else {}
        for queue in sorted(declared_queues(manifest)):
            for app, wiring in others.items():
                # another app's async destination is its own only while no app declares
                # it; one this app declares already is a send the owner allowed
                if queue in wiring.queues or (queue in wiring.destinations
                                              and queue not in mine):
                    raise Conflict(f"queue {queue!r} belongs to app {app}; a queue has one "
                                   f"owner: use another name, or ask {app} to list {name} in "
                                   f"allowFrom of its spec.queues and send to it",
                                   code="queue_conflict", queue=queue, owner=app)
        for queue in sorted(destinations(manifest) - set(declared_queues(manifest))):
            for app, wiring in others.items():
                if queue in wiring.queues and name not in wiring.queues[queue]:
                    raise Forbidden(f"app {name} may not send its async results to queue "
                                    f"{queue!r}: it belongs to app {app}, whose spec.queues "
                                    f"does not list {name} in allowFrom",
                                    code="queue_forbidden", queue=queue, owner=app)
                if queue in wiring.destinations and queue not in wiring.queues:
                    raise Conflict(f"queue {queue!r} is already the async destination of app "
                                   f"{app}: declare it in spec.queues of one of the two and "
                                   "list the other in allowFrom", code="queue_conflict",
                                   queue=queue, owner=app)

    def check_send(self, sender: str, queue: str) -> None:
        if queue.startswith("skiff:"):
            raise SkiffError("queues named skiff:* are Skiff's own", code="reserved_queue",
                             status=400)
        owned = self.owner(queue)
        if owned is None:
            raise NotFound(f"no app owns queue {queue!r}: the app that consumes it declares it "
                           "(a queue trigger, or spec.queues)", code="queue_not_found",
                           queue=queue)
        owner, allowed = owned
        if owner != sender and sender not in allowed:
            raise Forbidden(f"app {sender} may not send to queue {queue!r}: it belongs to app "
                            f"{owner}, whose spec.queues does not list {sender} in allowFrom",
                            code="queue_forbidden", queue=queue, owner=owner)

    def forget(self, app: str, manifests: list[Manifest]) -> int:
        """Delete what the event plane holds for a deleted app: the queues any of its
        ``manifests`` (every revision it had) claimed that no other app owns now, and
        their messages, its async and rule queues, its async invocation records and
        schedule checkpoints. Call after :meth:`unwire`; returns how many messages went.
        Blocking (fsync'd commits): run it off the event loop."""
        if app in self.apps:
            raise RuntimeError(f"app {app} is still wired")
        claimed: set[str] = set()
        for manifest in manifests:
            claimed |= set(declared_queues(manifest)) | destinations(manifest)
        queues = {q for q in claimed if self.owner(q) is None}
        queues |= {q.name for q in self.broker.queues()
                   if q.name == async_queue(app) or q.name.startswith(f"skiff:rule:{app}:")}
        removed = sum(self.broker.delete_queue(q) for q in sorted(queues))
        self.state.forget_app(app)
        return removed

    def _consume(self, wiring: _AppWiring, queue: str,
                 handle: Callable[[list[Delivery]], Awaitable[None]], batch_size: int,
                 window: float, concurrency: int = 1) -> None:
        # The lease outlives the attempt: a batch may wait its batching window, then up to
        # its timeout for an instance (the pool's admission wait), then run for its timeout
        # (the instance is stopped then). So a message is delivered again only after its
        # attempt ended, one attempt of an invocation at a time, which is what lets
        # @idempotent take over the record of an attempt that died (skiff.sdk.idempotency).
        visibility = window + 2 * wiring.manifest.spec.resources.timeout + 30.0
        wiring.consumers.append(queue)
        if wiring.manifest.name in self._held:  # wired again while a budget holds it
            return
        self.dispatcher.add(Consumer(queue, handle, batch_size, window, visibility,
                                     concurrency))

    # -- async invocation -----------------------------------------------------------
    async def accept(self, app: str, msg: p.HttpRequest | p.Event,
                     traceparent: str | None = None) -> str:
        """:meth:`enqueue_invocation` off the event loop: its commit waits for an fsync, and
        the loop serves every app meanwhile."""
        return await asyncio.to_thread(self.enqueue_invocation, app, msg, traceparent)

    def enqueue_invocation(self, app: str, msg: p.HttpRequest | p.Event,
                           traceparent: str | None = None) -> str:
        """Durably accept an async invocation; returns its id (202 to the caller).
        Past the app's bound of pending invocations: TooManyRequests (429).

        The bound is counted, then the invocation recorded: accepts racing on other
        threads (or nodes) may each pass it, so an app overshoots it by at most the
        accepts in flight at once, which is what a bound against a flood needs."""
        attrs = {"traceparent": traceparent} if traceparent else None
        pending = self.state.pending_async(app)
        if pending >= self.max_pending_per_app:
            raise TooManyRequests(
                f"app {app} has {pending} async invocations waiting to run, its limit "
                f"(SKIFF_ASYNC_MAX_PENDING_PER_APP); retry later", retry_after=1)
        self.state.accept_async(msg.id, app, time.time())
        self.broker.send(async_queue(app), _msgpack.encode(msg), attributes=attrs,
                         message_id=msg.id)
        return msg.id

    def backlog(self) -> list[tuple[str, int, float]]:
        """(app, async invocations not settled, when the oldest was accepted) per app
        that has any (for metrics, at scrape time: a query, so off the event loop)."""
        return self.state.async_backlog()

    def status(self, invocation_id: str) -> dict:
        """The async invocation's status, whichever node accepted or ran it."""
        out = self.state.async_status(invocation_id)
        if out is None:
            raise NotFound(f"no async invocation {invocation_id!r}", code="invocation_not_found")
        if out["result"] is not None:
            raw = out["result"]
            try:
                out["result"] = json.loads(raw)
            except ValueError:
                out["result"] = raw.decode("utf-8", "replace")
        return out

    def _invocation(self, app: str, msg: p.HttpRequest | p.Event, trigger: str,
                    d: Delivery | None = None) -> Invocation:
        """What this plane invokes: the one boundary to the platform."""
        return Invocation.start(
            app, trigger, msg, timeout=self._timeout(app),
            traceparent=(d.attributes or {}).get("traceparent") if d else None,
            attempt=d.receive_count if d else 1)

    def _set_status(self, inv_id: str, status: str, attempts: int, *, code: int | None = None,
                    result: bytes | None = None, error: str | None = None) -> None:
        self.state.set_async_status(inv_id, status, attempts, time.time(), code=code,
                                    result=result, error=error)

    def _async_batch(self, app: str) -> Callable[[list[Delivery]], Awaitable[None]]:
        async def handle(batch: list[Delivery]) -> None:
            for d in batch:
                await self._run_async(app, d)
        return handle

    async def _run_async(self, app: str, d: Delivery) -> None:
        wiring = self.apps.get(app)
        if wiring is None:
            return
        cfg = wiring.manifest.spec.async_
        msg = _requests.decode(d.body)
        error, code, body = None, None, b""
        try:
            resp = await self.invoke(self._invocation(app, msg, "event", d))
            code, body = resp.status, resp.body
            if resp.status >= 500:
                error = f"status {resp.status}"
        except SkiffError as exc:
            error = f"{exc.code}: {exc.message}"
            code = exc.status
        # every write below commits (with an fsync): one trip to a thread, off the loop
        await asyncio.to_thread(self._settle, app, cfg, d, msg, code, body, error)

    def _settle(self, app: str, cfg: Any, d: Delivery, msg: p.HttpRequest | p.Event,
                code: int | None, body: bytes, error: str | None) -> None:
        waits = self.state.async_waits(d.message_id)
        if error is not None and error.startswith(_IN_PROGRESS) and waits < MAX_IN_PROGRESS_WAITS:
            # Another run holds the key (an invocation with the same key, or an attempt the
            # SDK could not name). It ends by its deadline, at most the app's timeout from
            # now: retry then, without spending an attempt, or a live duplicate would send
            # this one to the DLQ unprocessed.
            self.state.set_async_waits(d.message_id, waits + 1)
            self._set_status(d.message_id, "retrying", d.receive_count, code=code, error=error)
            self.broker.nack(d.queue, d.receipt, delay=self._timeout(app))
            return
        attempts = d.receive_count - waits
        if waits and (error is None or attempts >= cfg.max_attempts):
            self.state.set_async_waits(d.message_id, 0)
        if error is None:
            self._set_status(d.message_id, "succeeded", d.receive_count, code=code, result=body)
            if cfg.on_success:
                self._destination(cfg.on_success, app, d, msg, "Success", code, body, None)
            self.broker.ack(d.queue, d.receipt)
            return
        if attempts >= cfg.max_attempts:
            dest = cfg.on_failure or f"{app}-dlq"
            self._destination(dest, app, d, msg, "RetriesExhausted", code, body, error)
            self._set_status(d.message_id, "failed", d.receive_count, code=code, result=body,
                             error=error)
            self.log(app, f"async invocation {d.message_id} failed after {attempts} "
                          f"attempt(s): {error}; sent to {dest}")
            self.broker.ack(d.queue, d.receipt)
            return
        self._set_status(d.message_id, "retrying", d.receive_count, code=code, error=error)
        self.broker.nack(d.queue, d.receipt, delay=backoff(attempts, base=0.5, cap=60.0))

    def _timeout(self, app: str) -> float:
        wiring = self.apps.get(app)
        return wiring.manifest.spec.resources.timeout if wiring else 30.0

    def _destination(self, queue: str, app: str, d: Delivery, msg: p.HttpRequest | p.Event,
                     condition: str, code: int | None, body: bytes, error: str | None) -> None:
        """A Lambda-style destination record."""
        payload: Any = msg.payload if isinstance(msg, p.Event) else msg.body
        record = {
            "version": "1.0", "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {"requestId": d.message_id, "condition": condition,
                               "approximateInvokeCount": d.receive_count,
                               "functionArn": f"arn:aws:lambda:local:000000000000:function:{app}"},
            "requestPayload": _jsonish(payload),
            "responseContext": {"statusCode": code, "functionError": error},
            "responsePayload": _jsonish(body),
        }
        self.broker.send(queue, json.dumps(record).encode(), attributes=d.attributes or None)

    # -- queue triggers ---------------------------------------------------------------
    def _queue_batch(self, app: str, queue: str) -> Callable[[list[Delivery]], Awaitable[None]]:
        arn = queue_arn(queue)

        async def handle(batch: list[Delivery]) -> None:
            event = to_sqs_records(batch, arn)
            msg = p.Event(id=str(uuid.uuid4()), payload=json.dumps(event).encode())
            failed: set[str] | None
            try:
                resp = await self.invoke(self._invocation(app, msg, "queue", batch[0]))
                failed = parse_batch_response(resp.body, [d.message_id for d in batch])
            except SkiffError as exc:
                self.log(app, f"batch of {len(batch)} from {queue} failed: {exc.message}")
                failed = {d.message_id for d in batch}
            done = [d.receipt for d in batch if not failed or d.message_id not in failed]
            if done:
                await asyncio.to_thread(self.broker.ack_batch, queue, done)
            for d in batch:
                if failed and d.message_id in failed:
                    await asyncio.to_thread(self.broker.nack, queue, d.receipt,
                                            delay=backoff(d.receive_count, base=0.5, cap=60.0))

        return handle

    def send(self, queue: str, body: bytes, attributes: dict[str, str] | None = None,
             delay: float = 0.0) -> str:
        if queue.startswith("skiff:"):
            raise SkiffError("queues named skiff:* are Skiff's own", code="reserved_queue",
                             status=400)
        return self.broker.send(queue, body, attributes=attributes, delay=delay)

    # -- events ---------------------------------------------------------------------
    def publish(self, event: dict[str, Any]) -> dict:
        """Fan a CloudEvent out to every matching rule, durably; returns who got it.
        Traced (``trace``), each app target's message carries its own fan-out span as the
        parent of its delivery."""
        event = validate_event(event)
        attrs = {"traceparent": event["traceparent"]} if event.get("traceparent") else None
        targets: list[tuple[str, int, bytes]] = []
        for app, wiring in self.apps.items():
            for index, pattern, fmt in wiring.rules:
                shaped = to_eventbridge(event) if fmt == "eventbridge" else event
                if matches(pattern, shaped):
                    targets.append((app, index, json.dumps(shaped).encode()))
        fan = self.trace.fan_out(event, [(app, rule_queue(app, index))
                                         for app, index, _ in targets]) if self.trace else None
        out = [(rule_queue(app, index), Outgoing(
            body, {"traceparent": fan.traceparents[n]} if fan else attrs,
            message_id=f"{event['id']}:{app}:{index}"))
            for n, (app, index, body) in enumerate(targets)]
        matched = {q.split(":")[2] for q, _ in out}
        for machine, mw in list(self.machines.items()):
            for index, pattern, fmt in mw.rules:
                shaped = to_eventbridge(event) if fmt == "eventbridge" else event
                if matches(pattern, shaped):
                    matched.add(MACHINE + machine)
                    out.append((machine_queue(machine), Outgoing(
                        json.dumps(shaped).encode(), attrs,
                        message_id=f"{event['id']}:{MACHINE}{machine}:{index}")))
        try:
            if out:  # the whole fan-out is one transaction: every target gets it, or none
                self.broker.send_many(out)
        except Exception as exc:
            if fan:
                fan.end(getattr(exc, "code", None) or type(exc).__name__)
            raise
        if fan:
            fan.end(None)
        return {"id": event["id"], "matched": sorted(matched)}

    def _rule_batch(self, app: str) -> Callable[[list[Delivery]], Awaitable[None]]:
        async def handle(batch: list[Delivery]) -> None:
            for d in batch:
                # the delivery's id, as Lambda keeps an async request id over its retries:
                # an @idempotent handler then takes over what a dead attempt left
                msg = p.Event(id=d.message_id, payload=d.body)
                try:
                    await self.invoke(self._invocation(app, msg, "event", d))
                except SkiffError as exc:
                    self.log(app, f"event {d.message_id} failed (attempt {d.receive_count}): "
                                  f"{exc.message}")
                    await asyncio.to_thread(self.broker.nack, d.queue, d.receipt,
                                            delay=backoff(d.receive_count, base=0.5, cap=60.0))
                    continue
                await asyncio.to_thread(self.broker.ack, d.queue, d.receipt)
        return handle

    # -- schedules ------------------------------------------------------------------
    async def _schedules(self) -> None:
        while True:
            self._rewired.clear()
            try:
                now = time.time()
                wait = await asyncio.to_thread(self._fire_due, now) - now
            except Exception as exc:  # noqa: BLE001 - the clock goes on
                print(f"skiff: schedules: {exc!r}", file=sys.stderr)
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rewired.wait(),
                                       min(max(wait, _MIN_SCHEDULE_SLEEP), _MAX_SCHEDULE_SLEEP))

    def fire_due_schedules(self, now_ts: float) -> int:
        """Enqueue every fire due at ``now_ts`` as an async invocation; returns how many
        this plane enqueued. Each schedule is claimed first (:meth:`TriggerState.
        claim_schedule`), so of several nodes on one database one enqueues each fire.
        Fires carry deterministic ids, so a crash between enqueue and checkpoint
        repeats none that is still queued."""
        fired = 0
        for app, index, trig, key in self._schedule_triggers():
            fired += self._fire_one(app, index, trig, key, now_ts)
        return fired

    def _fire_due(self, now_ts: float) -> float:
        """The schedule clock's tick: fire (and checkpoint) only the schedules that are
        due at ``now_ts``; returns when the next one is. A checkpoint that is not
        moved while nothing fires is the same checkpoint: the fires after it are
        those after ``now`` (``due`` counts fires in (checkpoint, now])."""
        soonest = math.inf
        for app, index, trig, key in self._schedule_triggers():
            at = self._next_fire.get((app, key))
            if at is None or at <= now_ts:
                self._fire_one(app, index, trig, key, now_ts)
                at = self._next_fire.get((app, key), math.inf)
            soonest = min(soonest, at)
        return soonest

    def _schedule_triggers(self) -> list[tuple[str, int, Any, str]]:
        return [(app, index, trig, f"{index}:{trig.schedule}@{trig.timezone}")
                for app, wiring in list(self.apps.items())
                for index, trig in enumerate(wiring.manifest.spec.triggers) if trig.schedule
                ] + [(MACHINE + name, index, trig, f"{index}:{trig.schedule}@{trig.timezone}")
                     for name, mw in list(self.machines.items())
                     for index, trig in enumerate(mw.triggers) if trig.schedule]

    def _fire_one(self, app: str, index: int, trig: Any, key: str, now_ts: float) -> int:
        now = datetime.fromtimestamp(now_ts, UTC)
        sched = parse_schedule(trig.schedule, trig.timezone)
        nxt = sched.next_after(now)
        # Held from the read of the checkpoint to its move: another node claiming it
        # meanwhile waits, then finds the fires enqueued. A crash before the move leaves
        # the checkpoint where it was, so the next claimant enqueues the fires again:
        # at least once, never lost.
        with self.state.claim_schedule(app, key) as claim:
            fires = [] if claim.last is None else due(  # new schedule: starts now, no backfill
                sched, datetime.fromtimestamp(claim.last, UTC), now, catch_up=trig.catch_up)
            for fire in fires:
                self._enqueue_fire(app, index, trig, fire)
            claim.advance(now_ts)
        # only now: a claim that failed (the database away a moment) is tried again at
        # the clock's next tick, not a period later (catchUp would fold its fire away)
        self._next_fire[(app, key)] = nxt.timestamp() if nxt is not None else math.inf
        return len(fires)

    def _enqueue_fire(self, app: str, index: int, trig: Any, fire: datetime) -> None:
        fire_id = f"sched-{app}-{index}-{int(fire.timestamp())}"
        event = trig.input if trig.input is not None else {
            "version": "0", "id": fire_id, "detail-type": "Scheduled Event",
            "source": "skiff.scheduler", "account": "000000000000",
            "time": fire.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "local",
            "resources": [f"arn:aws:events:local:000000000000:rule/{app}-{index}"],
            "detail": {},
        }
        if app.startswith(MACHINE):  # a machine's fire starts an execution, by its queue
            self.broker.send(machine_queue(app[len(MACHINE):]), json.dumps(event).encode(),
                             message_id=fire_id)
        else:
            self.enqueue_invocation(app, p.Event(id=fire_id,
                                                 payload=json.dumps(event).encode()))
        if self._after_fire is not None:
            self._after_fire(app)

    # -- operators ------------------------------------------------------------------
    def queues(self) -> list[dict]:
        return [{"name": q.name, "visible": q.visible, "in_flight": q.in_flight,
                 "delayed": q.delayed, "dead_letter_queue": q.dead_letter_queue,
                 "max_receive_count": q.max_receive_count} for q in self.broker.queues()]


def _jsonish(raw: bytes | Any) -> Any:
    if isinstance(raw, bytes | bytearray):
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")
    return raw
