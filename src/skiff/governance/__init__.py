"""Governance: what an operator requires of every app at deploy and run time.
So far: the encrypted, versioned secret store behind ``secret://`` refs, and
the deploy-time scan for credentials hard-coded in an app's files."""

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
    "HINT",
    "Finding",
    "InvalidSecret",
    "MasterKeyError",
    "ResolvedSecret",
    "SecretCorrupt",
    "SecretInfo",
    "SecretNotFound",
    "SecretStore",
    "SecretTooLarge",
    "SecretVersion",
    "generate_master_key",
    "load_master_key",
    "parse_ref",
    "scan_app",
]
