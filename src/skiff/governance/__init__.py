"""Governance: what an operator requires of every app at deploy and run time:
who may do what (identities, roles, owners), the policies every deploy passes
(CEL, failing closed), the audit trail, the encrypted secret store behind
``secret://`` refs, and the deploy-time scan for hard-coded credentials."""

from .admission import Admission, Governor, Limits, OwnerConflict, UnknownOwner, policy_input
from .advisories import NOT_AUDITED, AdvisoryDB, Audit, pinned
from .audit import AuditEntry, AuditLog
from .identity import BOOTSTRAP, SYSTEM_UP, Identities, Principal, Role, TokenExpired
from .policy import Decision, Policy, PolicyDenied, PolicyError, evaluate
from .scan import HINT, Finding, scan_app
from .secrets import (
    InvalidSecret,
    MasterKeyError,
    ResolvedSecret,
    SecretCorrupt,
    SecretInfo,
    SecretNotFound,
    SecretStore,
    SecretTooLarge,
    SecretVersion,
    generate_master_key,
    load_master_key,
    parse_ref,
)

__all__ = [
    "BOOTSTRAP",
    "NOT_AUDITED",
    "HINT",
    "SYSTEM_UP",
    "Admission",
    "AdvisoryDB",
    "Audit",
    "AuditEntry",
    "AuditLog",
    "Decision",
    "Finding",
    "Governor",
    "Identities",
    "InvalidSecret",
    "Limits",
    "MasterKeyError",
    "OwnerConflict",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "Principal",
    "ResolvedSecret",
    "Role",
    "SecretCorrupt",
    "SecretInfo",
    "SecretNotFound",
    "SecretStore",
    "SecretTooLarge",
    "SecretVersion",
    "TokenExpired",
    "UnknownOwner",
    "evaluate",
    "generate_master_key",
    "load_master_key",
    "parse_ref",
    "pinned",
    "policy_input",
    "scan_app",
]
