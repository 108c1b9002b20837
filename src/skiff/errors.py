"""The one exception tree of Skiff. Every error a user can hit carries an HTTP
``status`` and a stable ``code`` and says what to do.

    SkiffError                 500 internal_error       (and 400 bad_request, bad_path, bad_upload,
    │                                                    bad_event, bad_value, bad_ttl, bad_silence:
    │                                                    an alert silence without matchers or end,
    │                                                    bad_config: a
    │                                                    setting such as SKIFF_NODE_NAME is
    │                                                    unusable; 503 server_busy; bad_budget:
    │                                                    a budget's owner, metric, limit or action)
    ├── ManifestError          422 invalid_manifest     skiff.yaml does not validate
    │                              (owner_required, unknown_owner: metadata.owner once identities
    │                               are enabled; skiff.governance.admission; quota_exceeded: over
    │                               the owner's quota, names the limit and the use,
    │                               skiff.governance.quotas)
    ├── DeployError            422 deploy_failed        install or import of an app failed
    │                                                   (archive_invalid 422: an archive that does
    │                                                   not read back, on restore)
    │                                                   (build_failed, release_failed: a spec.build
    │                                                   or spec.release command exited non-zero
    │                                                   or timed out; its last output lines are
    │                                                   in the error; data_dir_failed: the app's
    │                                                   resources.diskMB volume could not be made)
    │                                                   (bundle_missing, bundle_invalid, bad_revision:
    │                                                   a revision another node deployed cannot
    │                                                   be brought up on this one; logged for the app)
    ├── NotFound               404 not_found            (app_not_found, revision_not_found, route_not_found,
    │                                                   metrics_off: SKIFF_METRICS=0,
    │                                                   archive_not_found: no archive to restore,
    │                                                   approval_not_found, budget_not_found,
    │                                                   alert_not_found, silence_not_found,
    │                                                   state_machine_not_found: no machine of
    │                                                   the calling app has the name, skiff.sdk;
    │                                                   execution_not_found: admin API)
    ├── Gone                   410 app_archived         the app expired or was removed and is
    │                                                   archived: `skiff restore APP` (its routes
    │                                                   answer so; skiff.governance.lifecycle)
    ├── PayloadTooLarge        413 payload_too_large    (app_too_large: a deploy upload expands too far)
    ├── Unauthorized           401 unauthorized         admin or metrics token missing or wrong (unknown_token,
    │                                                   token_expired, token_revoked, oidc_rejected)
    ├── Forbidden              403 forbidden            (queue_forbidden) not this app's to use;
    │                                                   role_required, not_owner, policy_denied,
    │                                                   policy_load_failed, ttl_over_max: a renewal
    │                                                   past SKIFF_POLICY_MAX_TTL_DAYS, self_approval:
    │                                                   the author of an approval request deciding
    │                                                   it (skiff.governance)
    ├── Conflict               409 conflict             (route_conflict, queue_conflict, owner_conflict)
    │                                                   owned by another app or owner; name_taken:
    │                                                   a restore onto a name another app uses now;
    │                                                   approval_decided: approved or denied already;
    │                                                   alert_not_firing: an ack of a resolved alert
    ├── TooManyRequests        429 too_many_requests    pool and its queue are full
    │                                                   (budget_exceeded: the owner's monthly budget
    │                                                   is spent, Retry-After the next month;
    │                                                   skiff.governance.budgets; app_expired: its
    │                                                   TTL ended and SKIFF_ON_EXPIRY or its
    │                                                   skiff.dev/on-expiry label is throttle;
    │                                                   websocket_limit: SKIFF_WS_MAX_CONNECTIONS
    │                                                   WebSockets of the app are open)
    ├── UidConflict            409 uid_conflict         another Skiff home holds this home's app uids
    ├── HomeInUse              409 home_in_use          another server runs on this home (exit 2)
    ├── PolicyError            422 invalid_policy       a policy that does not load (file:line:column)
    ├── InvocationError        502 (instance_crashed, memory_limit, bad_result; 500 handler_error,
    │                               invalid_response: not valid HTTP, refused by the gateway)
    ├── InvocationTimeout      504 timeout
    ├── DatabaseUnavailable    503 database_unavailable  SKIFF_DATABASE_URL cannot be opened or reached
    └── SchemaMismatch         503 schema_mismatch       the database's schema is older or newer than
                                                         this node's code (run ``skiff migrate``)

The HTTP edge (skiff.edge) answers in the same format before a request reaches
the gateway: 431 request_head_too_large, 414 request_line_too_long, 408
request_timeout.

A WebSocket handshake the gateway does not pass on is answered in this format
too (skiff.gateway.websocket): 400 websocket_not_supported (not an ASGI app),
403 websocket_refused (the app closed before accepting), 429 websocket_limit.
Queues: 404 queue_not_found (a queue no app declares and the broker never held;
``skiff queues send --create`` makes one).

The CLI's own (skiff.cli.failures prints each as ``error [code] message`` and a hint):
503 unreachable (no server at the URL; the message names where the URL came from),
404 context_not_found, 400 bad_url, 502 not_skiff (something else answers there),
400 bad_usage (a flag or argument; exit 2), 400 bad_json, os_error (a file),
400 no_manifest, 422 import_failed (``skiff validate``: the handler does not import),
422 gate_failed (``skiff test``), 400 bad_event_kind, 400 bad_template, 400 bad_name,
409 exists, 400 confirmation_required (`skiff rm` without a terminal to ask on and
without --yes; exit 2).
"""

from __future__ import annotations


class SkiffError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 **details: object) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


class ManifestError(SkiffError):
    status = 422
    code = "invalid_manifest"


class DeployError(SkiffError):
    status = 422
    code = "deploy_failed"


class NotFound(SkiffError):
    status = 404
    code = "not_found"


class Gone(SkiffError):
    status = 410
    code = "gone"


class PayloadTooLarge(SkiffError):
    status = 413
    code = "payload_too_large"


class Unauthorized(SkiffError):
    status = 401
    code = "unauthorized"


class Forbidden(SkiffError):
    status = 403
    code = "forbidden"


class Conflict(SkiffError):
    status = 409
    code = "conflict"


class TooManyRequests(SkiffError):
    status = 429
    code = "too_many_requests"


class UidConflict(SkiffError):
    status = 409
    code = "uid_conflict"


class HomeInUse(SkiffError):
    status = 409
    code = "home_in_use"
    exit_code = 2  # `skiff up` exits with it: a usage problem, not a crash


class InvocationError(SkiffError):
    status = 502
    code = "handler_error"


class InvocationTimeout(SkiffError):
    status = 504
    code = "timeout"


class DatabaseUnavailable(SkiffError):
    status = 503
    code = "database_unavailable"


class SchemaMismatch(SkiffError):
    status = 503
    code = "schema_mismatch"
