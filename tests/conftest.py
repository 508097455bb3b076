"""Shared test helpers: prerequisites that skip locally but fail loudly under CI=true."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _signing_keys() -> None:
    """Every process the tests start signs and checks work with one set of keys."""
    if os.environ.get("FLEET_KEYS_DIR"):
        return
    import tempfile

    from workers.signing import generate

    directory = tempfile.mkdtemp(prefix="fleet-test-keys-")
    generate(directory)
    os.environ["FLEET_KEYS_DIR"] = directory


_signing_keys()


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when a prerequisite is missing; under CI=true, fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)
