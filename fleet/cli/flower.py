"""A small client of Flower's HTTP API on loopback, for the demo and the tests.

Flower only knows the tasks whose events it received: its event receiver must be
listening before a task runs, or the task never shows. ``sees_workers`` is the signal
that it is: Flower's workers page is built from the workers' heartbeat events alone.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass
from typing import Any


def basic_auth(user: str, password: str) -> str:
    """The value of an ``Authorization`` header for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class FlowerClient:
    """Flower at ``http://127.0.0.1:<port>`` with basic auth."""

    port: int
    user: str
    password: str

    def get(self, path: str) -> Any:
        """The JSON answer to ``GET path``; raises ``OSError``/``ValueError`` if none."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        request.add_header("Authorization", basic_auth(self.user, self.password))
        with urllib.request.urlopen(request, timeout=5) as answer:  # loopback only
            return json.loads(answer.read())

    def sees_workers(self) -> bool:
        """Flower's event receiver has heard at least one worker's heartbeat."""
        try:
            return bool(self.get("/workers?json=1")["data"])
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """The tasks called ``name`` that Flower knows; none while it does not answer."""
        try:
            return list(self.get(f"/api/tasks?taskname={name}").values())
        except (OSError, ValueError, AttributeError):
            return []
