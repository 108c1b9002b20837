"""The shared workflow history: state machines, executions and events in PostgreSQL
(tables of migration 0004). An appended event id that exists is a unique violation,
raised as HistoryConflict: two nodes never write two pasts of one execution."""

from __future__ import annotations

import json

from skiff.store.postgres import PostgresDatabase
from skiff.store.workflow_history import (
    EXECUTION_COLUMNS,
    ExecutionRow,
    Finish,
    HistoryConflict,
    MachineRow,
    WorkflowHistory,
    dump,
    execution_row,
    machine_row,
)


class PostgresWorkflowHistory(WorkflowHistory):
    shared = True  # several nodes: each execution runs on the node holding its lease

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def save_machine(self, row: MachineRow) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO sfn_machines VALUES (%s, %s, %s, %s, %s, %s, %s) ON "
                         "CONFLICT DO NOTHING", (row.name, row.revision, row.definition,
                                                row.type, row.created, row.app,
                                                dump(list(row.triggers))))
            conn.execute("INSERT INTO sfn_current VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                         "SET revision = EXCLUDED.revision", (row.name, row.revision))

    def machine(self, name: str, revision: str | None = None) -> MachineRow | None:
        with self.db.connection() as conn:
            if revision is None:
                row = conn.execute(
                    "SELECT m.name, m.revision, m.definition, m.type, m.created, m.app, m.triggers FROM "
                    "sfn_machines m JOIN sfn_current c ON c.name = m.name AND "
                    "c.revision = m.revision WHERE m.name = %s", (name,)).fetchone()
            else:
                row = conn.execute("SELECT name, revision, definition, type, created, app, triggers FROM "
                                   "sfn_machines WHERE name = %s AND revision = %s",
                                   (name, revision)).fetchone()
        return None if row is None else machine_row(row)

    def machine_revisions(self, name: str) -> list[MachineRow]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT name, revision, definition, type, created, app, triggers FROM "
                                "sfn_machines WHERE name = %s ORDER BY created, revision",
                                (name,)).fetchall()
        return [machine_row(r) for r in rows]

    def machines(self) -> list[MachineRow]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT m.name, m.revision, m.definition, m.type, m.created, m.app, m.triggers FROM sfn_machines m "
                "JOIN sfn_current c ON c.name = m.name AND c.revision = m.revision "
                "ORDER BY m.name").fetchall()
        return [machine_row(r) for r in rows]

    def delete_machine(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM sfn_events WHERE arn IN (SELECT arn FROM sfn_executions "
                         "WHERE machine = %s)", (name,))
            conn.execute("DELETE FROM sfn_executions WHERE machine = %s", (name,))
            conn.execute("DELETE FROM sfn_current WHERE name = %s", (name,))
            conn.execute("DELETE FROM sfn_machines WHERE name = %s", (name,))

    def create_execution(self, row: ExecutionRow, owner: str | None = None,
                         until: float | None = None) -> bool:
        with self.db.connection() as conn:
            return conn.execute(
                f"INSERT INTO sfn_executions ({EXECUTION_COLUMNS}, owner, lease_until) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (row.arn, row.name, row.machine, row.revision, row.status, dump(row.input),
                 row.start, None if row.output is None else dump(row.output), row.error,
                 row.cause, row.stop, owner, until)).rowcount == 1

    def claim(self, arn: str, owner: str, until: float, now: float) -> bool:
        with self.db.connection() as conn:
            return conn.execute(
                "UPDATE sfn_executions SET owner = %s, lease_until = %s WHERE arn = %s AND "
                "status = 'RUNNING' AND (owner IS NULL OR owner = %s OR lease_until < %s)",
                (owner, until, arn, owner, now)).rowcount == 1

    def renew(self, owner: str, arns: list[str], until: float) -> set[str]:
        if not arns:
            return set()
        with self.db.connection() as conn:
            rows = conn.execute("UPDATE sfn_executions SET lease_until = %s WHERE owner = %s "
                                "AND arn = ANY(%s) RETURNING arn",
                                (until, owner, list(arns))).fetchall()
        return {r[0] for r in rows}

    def orphans(self, now: float, limit: int = 100) -> list[ExecutionRow]:
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE status = 'RUNNING' "
                "AND (owner IS NULL OR lease_until < %s) ORDER BY start, arn LIMIT %s",
                (now, limit)).fetchall()
        return [execution_row(r) for r in rows]

    def execution(self, arn: str) -> ExecutionRow | None:
        with self.db.connection() as conn:
            row = conn.execute(f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE "
                               "arn = %s", (arn,)).fetchone()
        return None if row is None else execution_row(row)

    def executions(self, machine: str | None = None, status: str | None = None,
                   limit: int = 1000) -> list[ExecutionRow]:
        where, args = [], []
        if machine is not None:
            where.append("machine = %s")
            args.append(machine)
        if status is not None:
            where.append("status = %s")
            args.append(status)
        sql = (f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY start DESC, arn LIMIT %s")
        with self.db.connection() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [execution_row(r) for r in rows]

    def running(self) -> list[ExecutionRow]:
        with self.db.connection() as conn:
            rows = conn.execute(f"SELECT {EXECUTION_COLUMNS} FROM sfn_executions WHERE "
                                "status = 'RUNNING' ORDER BY start, arn").fetchall()
        return [execution_row(r) for r in rows]

    def append(self, arn: str, events: list[dict], finish: Finish | None = None) -> None:
        unique = self.db.psycopg.errors.UniqueViolation
        try:
            with self.db.transaction() as conn, conn.cursor() as cur:
                cur.executemany("INSERT INTO sfn_events VALUES (%s, %s, %s)",
                                [(arn, ev["id"], dump(ev)) for ev in events])
                if finish is not None:
                    cur.execute(
                        "UPDATE sfn_executions SET status = %s, output = %s, error = %s, "
                        "cause = %s, stop = %s WHERE arn = %s",
                        (finish.status, None if finish.output is None else dump(finish.output),
                         finish.error, finish.cause, finish.stop, arn))
        except unique:
            raise HistoryConflict(f"the history of {arn} already has one of the events "
                                  f"{events[0]['id']}..{events[-1]['id']}") from None

    def history(self, arn: str) -> list[dict]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT event FROM sfn_events WHERE arn = %s ORDER BY id",
                                (arn,)).fetchall()
        return [json.loads(r[0]) for r in rows]
