"""Skiff: a self-hostable serverless platform for micro apps."""

__version__ = "0.1.0"
