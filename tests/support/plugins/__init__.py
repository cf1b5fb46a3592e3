"""Patches the whole test session relies on, each a named pytest plugin (tests/conftest.py)."""
