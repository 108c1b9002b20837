"""The workflow history interface: state machines, executions and their event lists.

What the durable executor (``skiff.platform.workflows``) writes so that a ``kill -9`` of
the platform loses no step of a Standard execution:

- each state machine revision (its definition as JSON, content-addressed; the current
  revision per name), so an execution replays against the revision it started on;
- each execution's row (ARN, name, machine name and revision, status, input, output,
  error, cause, start and stop times);
- its history, append-only: event ids count from 1 with no gap, and appending an id
  that exists fails (:class:`HistoryConflict`), so two writers can never interleave
  two different pasts of one execution.

:meth:`WorkflowHistory.append` writes the events and, with ``finish``, the final status
in one transaction: an execution whose last event is ExecutionSucceeded is never seen
RUNNING after a restart. Due timers are not a table of their own: the interpreter
rebuilds them from the history (``replay(...).pending()``), and the executor re-arms
them at start, so there is one record of each timer, not two to keep in step.

Events are the interpreter's plain dicts (skiff.workflows.events), stored as JSON.
:class:`SQLiteWorkflowHistory` is the embedded backend (its own ``workflows.db``,
fsync'd on every commit); :class:`skiff.store.workflow_history_postgres.
PostgresWorkflowHistory` the shared one. tests/store/test_workflow_history_contract.py
is the contract of both.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.errors import SkiffError
from skiff.store.sqlite import connect

#: The statuses an execution ends in (as DescribeExecution names them).
FINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class HistoryConflict(SkiffError):
    """Another writer appended the same event id: this writer's view is stale."""

    status = 409
    code = "workflow_history_conflict"


@dataclass(frozen=True, slots=True)
class MachineRow:
    name: str
    revision: str
    definition: str  # the definition as JSON text, as deployed
    type: str  # STANDARD | EXPRESS
    created: float
    #: the app the machine acts as (spec.app): the KV, queues and events its service
    #: integrations reach are that app's; None: it reaches none of them
    app: str | None = None
    #: what starts its executions (spec.triggers as the manifest gives them: queue,
    #: schedule, event), kept with the revision so a restart or a rollback wires them
    triggers: tuple[dict, ...] = ()


def machine_row(row: tuple) -> MachineRow:
    *head, triggers = row
    return MachineRow(*head, triggers=tuple(json.loads(triggers)) if triggers else ())


@dataclass(frozen=True, slots=True)
class ExecutionRow:
    arn: str
    name: str
    machine: str
    revision: str
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    input: Any
    start: float
    output: Any = None
    error: str | None = None
    cause: str | None = None
    stop: float | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The final status :meth:`WorkflowHistory.append` records with the last events."""

    status: str  # RUNNING again when a redrive reopens the execution
    stop: float | None
    output: Any = None
    error: str | None = None
    cause: str | None = None


class WorkflowHistory(abc.ABC):
    """Thread-safe; every method is atomic."""

    #: several nodes share it (PostgreSQL): an execution runs on the one node holding its
    #: lease (:meth:`claim`), and another takes it over when that lease runs out
    shared = False

    # -- state machines ------------------------------------------------------------
    @abc.abstractmethod
    def save_machine(self, row: MachineRow) -> None:
        """Keep ``row`` (a revision already kept stays as it was) and make it the
        machine's current revision."""

    @abc.abstractmethod
    def machine(self, name: str, revision: str | None = None) -> MachineRow | None:
        """The revision named, or the current one; None when there is none."""

    @abc.abstractmethod
    def machine_revisions(self, name: str) -> list[MachineRow]:
        """Every revision of the machine, oldest first (by when each was first saved)."""

    @abc.abstractmethod
    def machines(self) -> list[MachineRow]:
        """The current revision of every machine, by name."""

    @abc.abstractmethod
    def delete_machine(self, name: str) -> None:
        """Forget the machine, its revisions, executions and histories."""

    # -- executions ----------------------------------------------------------------
    @abc.abstractmethod
    def create_execution(self, row: ExecutionRow, owner: str | None = None,
                         until: float | None = None) -> bool:
        """Record a new execution (leased to ``owner`` until ``until``, when given); False
        (and nothing written) when its ARN exists."""

    @abc.abstractmethod
    def execution(self, arn: str) -> ExecutionRow | None: ...

    @abc.abstractmethod
    def executions(self, machine: str | None = None, status: str | None = None,
                   limit: int = 1000) -> list[ExecutionRow]:
        """Executions, newest start first."""

    @abc.abstractmethod
    def running(self) -> list[ExecutionRow]:
        """Every RUNNING execution (what resumes at start), oldest first."""

    # -- leases (one node runs an execution) ---------------------------------------
    @abc.abstractmethod
    def claim(self, arn: str, owner: str, until: float, now: float) -> bool:
        """Take the RUNNING execution for ``owner`` until ``until`` when it has no lease,
        its lease ran out before ``now``, or ``owner`` holds it; whether it did."""

    @abc.abstractmethod
    def renew(self, owner: str, arns: list[str], until: float) -> set[str]:
        """Extend to ``until`` the leases ``owner`` still holds of ``arns``; those."""

    @abc.abstractmethod
    def orphans(self, now: float, limit: int = 100) -> list[ExecutionRow]:
        """RUNNING executions with no lease or one that ran out before ``now``."""

    @abc.abstractmethod
    def append(self, arn: str, events: list[dict], finish: Finish | None = None) -> None:
        """Append ``events`` (each with its ``id``) and, with ``finish``, end the
        execution, in one transaction. An id already there: HistoryConflict."""

    @abc.abstractmethod
    def history(self, arn: str) -> list[dict]:
        """The execution's events in id order ([] for an unknown one)."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


EXECUTION_COLUMNS = ("arn, name, machine, revision, status, input, start, output, error, "
                     "cause, stop")


def execution_row(row: tuple) -> ExecutionRow:
    arn, name, machine, revision, status, inp, start, out, error, cause, stop = row
    return ExecutionRow(arn, name, machine, revision, status, load(inp), start, load(out),
                        error, cause, stop)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sfn_machines (
  name TEXT NOT NULL,
  revision TEXT NOT NULL,
  definition TEXT NOT NULL,
  type TEXT NOT NULL,
  created REAL NOT NULL,
  app TEXT,
  triggers TEXT,
  PRIMARY KEY (name, revision)
);
CREATE TABLE IF NOT EXISTS sfn_current (
  name TEXT PRIMARY KEY,
  revision TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sfn_executions (
  arn TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  machine TEXT NOT NULL,
  revision TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT,
  start REAL NOT NULL,
  output TEXT,
  error TEXT,
  cause TEXT,
  stop REAL,
  owner TEXT,
  lease_until REAL
);
CREATE INDEX IF NOT EXISTS sfn_executions_machine ON sfn_executions (machine, start);
CREATE INDEX IF NOT EXISTS sfn_executions_status ON sfn_executions (status, start);
CREATE TABLE IF NOT EXISTS sfn_events (
  arn TEXT NOT NULL,
  id INTEGER NOT NULL,
  event TEXT NOT NULL,
  PRIMARY KEY (arn, id)
) WITHOUT ROWID;
"""


class SQLiteWorkflowHistory(WorkflowHistory):
    """``workflows.db``: fsync'd (synchronous=FULL) because an appended event is a
    promise that the step it records will not run again; ``exclusive`` for the
    platform's own file."""

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = connect(self.path, schema=_SCHEMA, durable=True, exclusive=exclusive)
        # a file written before migration 0009: machines' app and triggers, leases
        for table, column, kind in (("sfn_machines", "app", "TEXT"),
                                    ("sfn_machines", "triggers", "TEXT"),
                                    ("sfn_executions", "owner", "TEXT"),
                                    ("sfn_executions", "lease_until", "REAL")):
            columns = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def save_machine(self, row: MachineRow) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("INSERT OR IGNORE INTO sfn_machines VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (row.name, row.revision, row.definition, row.type, row.created,
                                  row.app, dump(list(row.triggers))))
                self._db.execute("INSERT INTO sfn_current VALUES (?, ?) ON CONFLICT DO UPDATE "
                                 "SET revision = excluded.revision", (row.name, row.revision))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def machine(self, name: str, revision: str | None = None) -> MachineRow | None:
        with self._lock:
            if revision is None:
                got = self._db.execute("SELECT revision FROM sfn_current WHERE name = ?",
                                       (name,)).fetchone()
                if got is None:
                    return None
                revision = got[0]
            row = self._db.execute("SELECT name, revision, definition, type, created, app, triggers FROM "
                                   "sfn_machines WHERE name = ? AND revision = ?",
                                   (name, revision)).fetchone()
        return None if row is None else machine_row(row)

    def machine_revisions(self, name: str) -> list[MachineRow]:
        with self._lock:
            rows = self._db.execute("SELECT name, revision, definition, type, created, app, triggers FROM "
                                    "sfn_machines WHERE name = ? ORDER BY created, revision",
                                    (name,)).fetchall()
        return [machine_row(r) for r in rows]

    def machines(self) -> list[MachineRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT m.name, m.revision, m.definition, m.type, m.created, m.app, m.triggers FROM sfn_machines m "
                "JOIN sfn_current c ON c.name = m.name AND c.revision = m.revision "
                "ORDER BY m.name").fetchall()
        return [machine_row(r) for r in rows]

    def delete_machine(self, name: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM sfn_events WHERE arn IN (SELECT arn FROM "
                                 "sfn_executions WHERE machine = ?)", (name,))
                self._db.execute("DELETE FROM sfn_executions WHERE machine = ?", (name,))
                self._db.execute("DELETE FROM sfn_current WHERE name = ?", (name,))
                self._db.execute("DELETE FROM sfn_machines WHERE name = ?", (name,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create_execution(self, row: ExecutionRow, owner: str | None = None,
                         until: float | None = None) -> bool:
        with self._lock:
            return self._db.execute(
                f"INSERT OR IGNORE INTO sfn_executions ({EXECUTION_COLUMNS}, owner, "
                "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.arn, row.name, row.machine, row.revision, row.status, dump(row.input),
                 row.start, None if row.output is None else dump(row.output), row.error,
                 row.cause, row.stop, owner, until)).rowcount == 1

    def execution(self, arn: str) -> ExecutionRow | None:
        with self._lock:
            row = self._db.execute(f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE "
                                   "arn = ?", (arn,)).fetchone()
        return None if row is None else execution_row(row)

    def executions(self, machine: str | None = None, status: str | None = None,
                   limit: int = 1000) -> list[ExecutionRow]:
        where, args = [], []
        if machine is not None:
            where.append("machine = ?")
            args.append(machine)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = (f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY start DESC, arn LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [execution_row(r) for r in rows]

    def running(self) -> list[ExecutionRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE "
                                    "status = 'RUNNING' ORDER BY start, arn").fetchall()
        return [execution_row(r) for r in rows]

    def claim(self, arn: str, owner: str, until: float, now: float) -> bool:
        with self._lock:
            return self._db.execute(
                "UPDATE sfn_executions SET owner = ?, lease_until = ? WHERE arn = ? AND "
                "status = 'RUNNING' AND (owner IS NULL OR owner = ? OR lease_until < ?)",
                (owner, until, arn, owner, now)).rowcount == 1

    def renew(self, owner: str, arns: list[str], until: float) -> set[str]:
        held = set()
        with self._lock:
            for arn in arns:
                if self._db.execute("UPDATE sfn_executions SET lease_until = ? WHERE arn = ? "
                                    "AND owner = ?", (until, arn, owner)).rowcount == 1:
                    held.add(arn)
        return held

    def orphans(self, now: float, limit: int = 100) -> list[ExecutionRow]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE status = 'RUNNING' "
                "AND (owner IS NULL OR lease_until < ?) ORDER BY start, arn LIMIT ?",
                (now, limit)).fetchall()
        return [execution_row(r) for r in rows]

    def append(self, arn: str, events: list[dict], finish: Finish | None = None) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO sfn_events VALUES (?, ?, ?)",
                                     [(arn, ev["id"], dump(ev)) for ev in events])
                if finish is not None:
                    self._db.execute(
                        "UPDATE sfn_executions SET status = ?, output = ?, error = ?, "
                        "cause = ?, stop = ? WHERE arn = ?",
                        (finish.status, None if finish.output is None else dump(finish.output),
                         finish.error, finish.cause, finish.stop, arn))
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise HistoryConflict(f"the history of {arn} already has one of the events "
                                      f"{events[0]['id']}..{events[-1]['id']}") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def history(self, arn: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT event FROM sfn_events WHERE arn = ? ORDER BY id",
                                    (arn,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
