"""Signed work: what makes a host act carries the signature of a role allowed to ask it.

Two roles hold keys: ``control`` (controllers, monitors, the operator's CLI) and
``agent`` (the host agents). Each holds its Ed25519 private key, ``<dir>/<role>.key``
(mode 0600), and every process trusts the public keys ``<dir>/<role>.pub`` (and
``<role>-<anything>.pub``, so a new key can be trusted before the old one goes). A host
holds ``agent.key`` and ``control.pub`` only: it can sign what agents send (a request to
advance a job) and nothing that makes another host act.

A signed message is its fields plus ``_signed = {"by", "exp", "sig"}``: the signature
covers the canonical JSON of the subject (a task name, or an event type), the signer's
role, the expiry and the fields. The receiver checks that the role may send that subject,
that a trusted key of that role made the signature, and that it has not expired. Replays
within the expiry meet the records' state machines (a move runs once; a fence needs the
monitor's current decision), which is what makes a repeated message harmless.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from fleet.core.errors import FleetError, InvalidInput
from workers.secretfile import read_private

CONTROL, AGENT = "control", "agent"
ROLES = (CONTROL, AGENT)
SIGNED = "_signed"


class SignatureRefused(FleetError):
    """A message is unsigned, signed by a role that may not send it, forged or expired."""


def canonical(subject: str, by: str, exp: float, fields: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: one JSON text, keys sorted, no spaces."""
    return json.dumps([subject, by, exp, fields], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode()


@dataclass(frozen=True)
class Keyring:
    """This process's role and private key (None: it only verifies), the trusted public
    keys by role, and how long a signature it makes stays valid."""

    role: str
    private: Ed25519PrivateKey | None
    trusted: Mapping[str, tuple[Ed25519PublicKey, ...]]
    ttl_s: float = 3600.0
    clock: Callable[[], float] = field(default=time.time, compare=False)

    @classmethod
    def load(cls, directory: str, role: str, ttl_s: float = 3600.0) -> Keyring:
        """The keys in ``directory`` for a process of ``role``; ``InvalidInput`` when the
        directory is unset or holds no trusted key."""
        if role not in ROLES:
            raise InvalidInput(f"unknown signing role {role!r}; one of {', '.join(ROLES)}")
        if not directory:
            raise InvalidInput("FLEET_KEYS_DIR is not set: fleet signs the work it sends"
                               " to hosts; create keys with `fleet keys init DIR`")
        path = Path(directory)
        trusted = {r: tuple(_public(p) for p in sorted(path.glob(f"{r}*.pub"))
                            if p.stem == r or p.stem.startswith(f"{r}-")) for r in ROLES}
        if not trusted[CONTROL]:
            raise InvalidInput(f"no control.pub in FLEET_KEYS_DIR {directory}")
        key = path / f"{role}.key"
        private = _private(key) if key.exists() else None
        return cls(role, private, trusted, ttl_s)

    def seal(self, subject: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` with this role's signature for ``subject`` added."""
        if self.private is None:
            raise InvalidInput(f"this machine holds no {self.role}.key in FLEET_KEYS_DIR:"
                               f" it cannot sign {subject}")
        plain = json.loads(json.dumps(dict(fields)))  # what the receiver will decode
        plain.pop(SIGNED, None)
        exp = round(self.clock() + self.ttl_s, 3)
        sig = self.private.sign(canonical(subject, self.role, exp, plain))
        return {**plain, SIGNED: {"by": self.role, "exp": exp,
                                  "sig": base64.b64encode(sig).decode()}}

    def open(self, subject: str, fields: Mapping[str, Any], allowed: Collection[str],
             ) -> dict[str, Any]:
        """``fields`` without the signature once it is checked; ``SignatureRefused``
        says why it is not good enough."""
        plain = dict(fields)
        seal = plain.pop(SIGNED, None)
        if not isinstance(seal, dict):
            raise SignatureRefused(f"{subject}: unsigned")
        by, exp, sig = seal.get("by"), seal.get("exp"), seal.get("sig")
        if by not in allowed:
            raise SignatureRefused(f"{subject}: signed by {by!r}, which may not send it"
                                   f" (only {', '.join(sorted(allowed))})")
        if not isinstance(exp, int | float) or not isinstance(sig, str):
            raise SignatureRefused(f"{subject}: malformed signature")
        if not self._verified(subject, str(by), exp, sig, plain):
            raise SignatureRefused(f"{subject}: the signature does not match any trusted"
                                   f" {by} key")
        if exp < self.clock():
            raise SignatureRefused(f"{subject}: signature expired"
                                   f" {self.clock() - exp:.0f} s ago")
        return plain

    def _verified(self, subject: str, by: str, exp: float, sig: str,
                  plain: Mapping[str, Any]) -> bool:
        try:
            raw, data = base64.b64decode(sig, validate=True), canonical(subject, by, exp, plain)
        except (ValueError, TypeError):
            return False
        for key in self.trusted.get(by, ()):
            try:
                key.verify(raw, data)
                return True
            except InvalidSignature:
                continue
        return False


def _private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(
            read_private(path, "signing key", InvalidInput), password=None)
    except ValueError as exc:
        raise InvalidInput(f"cannot read signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"signing key {path} is not an Ed25519 key")
    return key


def _public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"public key {path} is not an Ed25519 key")
    return key


def generate(directory: str, roles: Collection[str] = ROLES) -> list[str]:
    """A key pair per role in ``directory`` (private keys 0600); pairs already there are
    kept. The files written, by name."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    written = []
    for role in roles:
        key, pub = path / f"{role}.key", path / f"{role}.pub"
        if key.exists() or pub.exists():
            continue
        private = Ed25519PrivateKey.generate()
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        pub.write_bytes(private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        written += [key.name, pub.name]
    return written


EVENT_SENDERS: Mapping[str, frozenset[str]] = {
    "fence": frozenset({CONTROL}), "confirm": frozenset({CONTROL}),
    "fence_now": frozenset({CONTROL}), "activate": frozenset({CONTROL}),
    "recover": frozenset({CONTROL, AGENT}),
}
"""Who may put each kind of event in the failover monitor's inbox: fence results and
operator commands come from the control plane; restart results from the agents too."""


def seal_event(ring: Keyring, event: Mapping[str, Any]) -> dict[str, Any]:
    """A failover inbox event signed by ``ring``'s role."""
    return ring.seal(f"failover.{event.get('type')}", event)


def open_event(ring: Keyring, data: Mapping[str, Any]) -> dict[str, Any]:
    """A failover inbox event once its signature is checked (``SignatureRefused``)."""
    kind = str(data.get("type"))
    return ring.open(f"failover.{kind}", data, EVENT_SENDERS.get(kind, frozenset()))
