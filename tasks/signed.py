"""Every fleet task is sent signed and runs only when its signature holds.

``send`` signs a task's kwargs with this process's role (``control`` unless the process
is an agent) and hands it to Celery. ``SignedTask`` is the base of every task of the app
(Celery's built-in ones too): before the task body runs it checks the signature against
``SENDERS`` (only ``fleet.job.advance`` may come from an agent; everything else from the
control plane) and refuses anything else: the worker logs why, the task fails with
``WorkRefused`` (Flower shows it) and nothing is done. Direct calls of ``run`` (tests of
the body) do not pass through here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task
from celery.result import AsyncResult

from fleet.settings import Settings, load_settings
from workers.signing import AGENT, CONTROL, Keyring, SignatureRefused

log = logging.getLogger(__name__)

SENDERS: dict[str, frozenset[str]] = {"fleet.job.advance": frozenset({CONTROL, AGENT})}
"""Tasks that a role other than the control plane may send; all others: control only."""
CONTROL_ONLY = frozenset({CONTROL})

_state: dict[str, Keyring] = {}
_lock = threading.Lock()


class WorkRefused(Exception):
    """A task message was not signed by a role allowed to send it; nothing was done."""


def configure_signing(settings: Settings, role: str = CONTROL) -> Keyring:
    """Load this process's keys (``settings.keys_dir``) for ``role``; the keyring.
    ``InvalidInput`` when they are missing or unsafe."""
    ring = Keyring.load(settings.keys_dir, role, settings.signature_ttl_s)
    with _lock:
        _state["ring"] = ring
    return ring


def forget_signing() -> None:
    """Drop the loaded keys: the next send or check loads them from the environment."""
    with _lock:
        _state.clear()


def keyring() -> Keyring:
    """This process's keyring, loaded from the environment (role ``control``) on first use
    (read without the lock: every task checks a signature, and a dict read is atomic)."""
    ring = _state.get("ring")
    return ring if ring is not None else configure_signing(load_settings())


def sealed(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of task ``name`` with this process's signature."""
    return keyring().seal(name, kwargs)


def send(name: str, kwargs: dict[str, Any], **options: Any) -> AsyncResult:
    """Send task ``name`` with ``kwargs``, signed (Celery ``send_task`` options pass on)."""
    from tasks.app import app

    return app.send_task(name, kwargs=sealed(name, kwargs), **options)


class SignedTask(Task):  # type: ignore[misc]  # Celery's Task is untyped
    """A task that runs only with a valid signature of a role allowed to send it."""

    throws = (WorkRefused,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if args:
                raise SignatureRefused(f"{self.name}: positional arguments are never signed")
            plain = keyring().open(self.name, kwargs, SENDERS.get(self.name, CONTROL_ONLY))
        except SignatureRefused as exc:
            log.warning("refused task %s[%s]: %s; nothing done", self.name,
                        getattr(self.request, "id", "?"), exc)
            raise WorkRefused(str(exc)) from None
        return super().__call__(**plain)
