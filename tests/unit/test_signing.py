"""Signed work: who may send what, and what a forged, altered or old message gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet.core.errors import InvalidInput
from workers.signing import AGENT, CONTROL, SIGNED, Keyring, SignatureRefused, generate

MIGRATE = {"vm": "vm1", "source": "h1", "destination": "h2", "job_id": "j1", "move_id": "m1"}


@pytest.fixture()
def keys(tmp_path: Path) -> str:
    generate(str(tmp_path))
    return str(tmp_path)


def test_control_signs_and_a_host_checks(keys: str) -> None:
    control, host = Keyring.load(keys, CONTROL), Keyring.load(keys, AGENT)
    sealed = control.seal("fleet.vm.migrate", MIGRATE)
    assert sealed[SIGNED]["by"] == CONTROL
    assert host.open("fleet.vm.migrate", sealed, {CONTROL}) == MIGRATE


@pytest.mark.parametrize("change", [
    lambda s: s.update(destination="evil"),               # an argument altered
    lambda s: s[SIGNED].update(exp=s[SIGNED]["exp"] + 1e6),  # its expiry pushed back
    lambda s: s[SIGNED].update(sig="A" * 88),              # a made-up signature
    lambda s: s[SIGNED].update(sig="not base64!"),
])
def test_an_altered_message_is_refused(keys: str, change: object) -> None:
    ring = Keyring.load(keys, CONTROL)
    sealed = ring.seal("fleet.vm.migrate", MIGRATE)
    change(sealed)  # type: ignore[operator]
    with pytest.raises(SignatureRefused, match="does not match"):
        ring.open("fleet.vm.migrate", sealed, {CONTROL})


def test_a_signature_covers_its_task_name(keys: str) -> None:
    ring = Keyring.load(keys, CONTROL)
    sealed = ring.seal("fleet.vm.start", {"vm": "vm1", "source": "h1", "by": "op"})
    with pytest.raises(SignatureRefused, match="does not match"):
        ring.open("fleet.vm.stop", sealed, {CONTROL})


def test_unsigned_and_malformed_messages_are_refused(keys: str) -> None:
    ring = Keyring.load(keys, AGENT)
    with pytest.raises(SignatureRefused, match="unsigned"):
        ring.open("fleet.host.fence", {"host": "h1"}, {CONTROL})
    with pytest.raises(SignatureRefused, match="malformed"):
        ring.open("fleet.host.fence", {"host": "h1", SIGNED: {"by": CONTROL, "exp": "x",
                                                              "sig": 1}}, {CONTROL})


def test_a_host_key_cannot_sign_control_work(keys: str) -> None:
    """An agent's key signs what agents may send, and nothing that moves or fences."""
    agent = Keyring.load(keys, AGENT)
    forged = agent.seal("fleet.host.fence", {"host": "h2", "attempt": 1})
    with pytest.raises(SignatureRefused, match="'agent', which may not send it"):
        agent.open("fleet.host.fence", forged, {CONTROL})
    lying = {**forged, SIGNED: {**forged[SIGNED], "by": CONTROL}}  # claims the control role
    with pytest.raises(SignatureRefused, match="does not match any trusted control key"):
        agent.open("fleet.host.fence", lying, {CONTROL})
    advance = agent.seal("fleet.job.advance", {"job_id": "j1"})
    assert agent.open("fleet.job.advance", advance, {CONTROL, AGENT}) == {"job_id": "j1"}


def test_an_expired_signature_is_refused(keys: str) -> None:
    now = [1000.0]
    ring = Keyring.load(keys, CONTROL, ttl_s=60)
    ring = Keyring(ring.role, ring.private, ring.trusted, 60, clock=lambda: now[0])
    sealed = ring.seal("fleet.vm.migrate", MIGRATE)
    now[0] += 59
    assert ring.open("fleet.vm.migrate", sealed, {CONTROL}) == MIGRATE
    now[0] += 2
    with pytest.raises(SignatureRefused, match="expired"):
        ring.open("fleet.vm.migrate", sealed, {CONTROL})


def test_a_rotated_key_is_trusted_beside_the_old_one(keys: str, tmp_path: Path) -> None:
    new = tmp_path / "new"
    generate(str(new), [CONTROL])
    (Path(keys) / "control-2.pub").write_bytes((new / "control.pub").read_bytes())
    signer = Keyring.load(str(new), CONTROL)
    assert Keyring.load(keys, AGENT).open("fleet.job.start",
                                          signer.seal("fleet.job.start", {"job_id": "j"}),
                                          {CONTROL}) == {"job_id": "j"}


def test_keys_that_are_missing_or_readable_by_others_are_refused(keys: str,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="FLEET_KEYS_DIR is not set"):
        Keyring.load("", CONTROL)
    with pytest.raises(InvalidInput, match=r"no control\.pub"):
        Keyring.load(str(tmp_path / "empty"), AGENT)
    os.chmod(Path(keys) / "control.key", 0o640)
    with pytest.raises(InvalidInput, match="readable by group or others"):
        Keyring.load(keys, CONTROL)
    os.remove(Path(keys) / "agent.key")
    verifier = Keyring.load(keys, AGENT)  # a verifier needs no private key ...
    with pytest.raises(InvalidInput, match=r"holds no agent\.key"):
        verifier.seal("fleet.job.advance", {"job_id": "j"})  # ... but cannot sign
