"""Workflow engines Skiff's executor is measured against (bench/workflows.py): each
script runs in its peer's environment under bench/.peers/ and prints one JSON line."""
