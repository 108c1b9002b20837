"""Where every log line goes: app output (rate-limited, escaped, attributed only to
what the platform knows), the platform's own lines and the egress proxy's audit."""

from __future__ import annotations

import time
from collections.abc import Callable

from skiff import ipc as p
from skiff.egress import EgressEvent
from skiff.instance import Instance
from skiff.logtext import one_line
from skiff.observe import Observe
from skiff.store import Store

LOG_LINES_PER_SECOND = 1000
MAX_LOG_LINE = 16 * 1024
MAX_TRACEBACK_LINES = 64  # the worker sends its last frames; more is an app's own text
APP_STREAMS = frozenset({"stdout", "stderr"})  # all an instance may write; the rest is ours


class LogSink:
    def __init__(self, store: Store, revision_of: Callable[[str], str],
                 observe: Observe | None = None) -> None:
        self._store = store
        self._revision_of = revision_of  # an app's current revision, "" when none
        self._observe = observe  # the terminal's copy of each line, when one watches

    def platform(self, app: str, revision: str, line: str, *, request_id: str = "",
                 instance: str = "") -> None:
        self._store.log(app, revision, instance, request_id, "platform", line)
        if self._observe is not None:
            self._observe.after_output(app, "platform", line, request_id)

    def traceback(self, app: str, revision: str, text: str, *, request_id: str,
                  instance: str) -> None:
        """A handler's traceback, as the instance reported it (so not trusted: each line
        escaped and cut, as any line of the app's stderr)."""
        for raw in text.rstrip().splitlines()[:MAX_TRACEBACK_LINES]:
            line = one_line(raw[:MAX_LOG_LINE])[:MAX_LOG_LINE]
            self._store.log(app, revision, instance, request_id, "stderr", line)
            if self._observe is not None:
                self._observe.after_output(app, "stderr", line, request_id)

    def instance_line(self, inst: Instance, log: p.Log) -> None:
        """A line an instance wrote. Nothing in the frame is taken on trust (the app can
        write raw frames): the stream is its stdout or stderr, never one of the platform's
        (platform, egress); the request id is one the instance is handling, else blank;
        the line is one line (control characters escaped)."""
        # a rate limit per instance: an app printing in a loop must not fill the disk
        now = int(time.monotonic())
        if now != inst.log_window:
            inst.log_window, inst.log_lines = now, 0
        inst.log_lines += 1
        # an instance's log lines arrive before its answer on the same socket, so a line
        # of a request it serves always finds that request still pending
        request_id = log.request_id if log.request_id and inst.handling(log.request_id) else ""
        if inst.log_lines > LOG_LINES_PER_SECOND:
            if inst.log_lines == LOG_LINES_PER_SECOND + 1:
                self.platform(inst.app, inst.revision, f"output over {LOG_LINES_PER_SECOND} "
                              "lines/s: the rest of this second's lines are dropped",
                              request_id=request_id, instance=inst.id)
            return
        stream = log.stream if log.stream in APP_STREAMS else "stdout"
        # cut before escaping (the frame may be megabytes) and after (escapes are longer)
        line = one_line(log.line[:MAX_LOG_LINE])[:MAX_LOG_LINE]
        self._store.log(inst.app, inst.revision, inst.id, request_id, stream, line)
        if self._observe is not None:
            self._observe.after_output(inst.app, stream, line, request_id)

    def instance_died(self, inst: Instance) -> None:
        reason = inst.exit_reason.message if inst.exit_reason else "exited"
        if inst.draining and inst.exit_reason and inst.exit_reason.code == "instance_crashed":
            reason = "stopped (idle or replaced)"
        self.platform(inst.app, inst.revision, f"instance {inst.id}: {reason}",
                      instance=inst.id)

    def egress(self, ev: EgressEvent) -> None:
        """One connection attempt through the egress proxy, as the app's audit line."""
        if not ev.host:  # refused at accept by a cap, before any head: reported once a second
            line = f"connection refused, DENIED ({ev.reason}): {ev.detail}"
            if ev.suppressed:
                line += f" ({ev.suppressed} more refused since the previous such line)"
        else:
            verdict = "allowed" if ev.allowed else f"DENIED ({ev.reason})"
            line = (f"{ev.method} {ev.host}:{ev.port} {verdict} rule={ev.rule or '-'} "
                    f"up={ev.bytes_up}B down={ev.bytes_down}B {ev.duration_ms:.1f}ms")
            if ev.reason == "forbidden_address":
                line += (f"; {ev.detail}, which no spec.egress entry can allow "
                         "(only the operator's SKIFF_EGRESS_ALLOW)")
            elif not ev.allowed and ev.rule:
                line += f'; add "{ev.rule}" to spec.egress to allow it'
        self._store.log(ev.app, self._revision_of(ev.app), "", "", "egress", line)
