"""Redfish fencing over HTTP(S) with the standard library only.

``power_off`` POSTs ``{"ResetType": "ForceOff"}`` to the system's
``#ComputerSystem.Reset`` action target (taken from the system resource, falling back to
``<system>/Actions/ComputerSystem.Reset``); ``power_state`` reads the system's
``PowerState``: ``Off`` is off, ``On``/``PoweringOn``/``PoweringOff`` count as on
(``PoweringOff`` is not yet off), anything else is unknown. A system already off is not
reset again.

Only ``https://`` unless ``allow_http`` (Basic credentials in clear otherwise). TLS is
verified by default (``verify_tls``, optional ``ca_file``); credentials go in an
``Authorization: Basic`` header, and a redirect is refused rather than followed, so they
never reach another address. HTTP errors raise ``FenceError``, a socket timeout raises
``FenceTimeout``.

Config keys: ``url`` (``https://bmc``), ``system`` (e.g. ``/redfish/v1/Systems/1``;
empty means the first member of ``/redfish/v1/Systems``), ``username``, ``password`` or
``password_file``, ``verify_tls``, ``ca_file``, ``allow_http``, ``reset_type``,
``command_timeout_s``,
``poll_s``, ``resend_s``.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from workers.fencing.base import (
    ConfirmingAgent,
    FenceError,
    FenceTimeout,
    PowerState,
    read_secret,
)

_ON = frozenset({"on", "poweringon", "poweringoff"})


@dataclass
class RedfishAgent(ConfirmingAgent):
    """One host's Redfish service."""

    url: str
    system: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    allow_http: bool = False
    reset_type: str = "ForceOff"
    command_timeout_s: float = 10.0
    poll_s: float = 1.0
    resend_s: float = 5.0
    kind: str = "redfish"

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise FenceError(f"redfish: url must start with http:// or https://: {self.url}")
        if self.url.startswith("http://") and not self.allow_http:
            raise FenceError(f"redfish: {self.url} is plain HTTP (credentials in clear); use"
                             " https:// or set allow_http = true")
        self.url = self.url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        password = self.password
        if not password and self.password_file:
            password = read_secret(self.password_file, "redfish")
        if self.username:
            token = base64.b64encode(f"{self.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        if not self.verify_tls:
            return ssl._create_unverified_context()
        return ssl.create_default_context(cafile=self.ca_file or None)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                ) -> dict[str, Any]:
        """One JSON request to the service; the decoded reply (``{}`` when empty)."""
        if not path.startswith("/") or path.startswith("//"):
            raise FenceError(f"redfish {method} {path!r}: not a path on {self.url}")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=self._headers())
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(
            context=self._context()), _NoRedirect())
        try:
            with opener.open(req, timeout=self.command_timeout_s) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                raise FenceError(f"redfish {method} {path}: redirected (HTTP {exc.code}) to"
                                 f" {exc.headers.get('Location', '?')}; redirects are not"
                                 " followed, so credentials stay with this BMC") from None
            raise FenceError(f"redfish {method} {path}: HTTP {exc.code} {exc.reason}") \
                from None
        except TimeoutError:
            raise FenceTimeout(f"redfish {method} {path}: no answer within "
                               f"{self.command_timeout_s:g}s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise FenceTimeout(f"redfish {method} {path}: timed out") from None
            raise FenceError(f"redfish {method} {path}: {exc.reason}") from None
        return _decode(raw, method, path)

    def system_path(self) -> str:
        """The system resource's path, discovered once when not configured."""
        if not self.system:
            members = self.request("GET", "/redfish/v1/Systems").get("Members", [])
            if not members or "@odata.id" not in members[0]:
                raise FenceError("redfish: /redfish/v1/Systems lists no system")
            self.system = str(members[0]["@odata.id"])
        return self.system

    def power_off(self, host: str) -> None:
        system = self.request("GET", self.system_path())
        if str(system.get("PowerState", "")).lower() == "off":
            return
        action = system.get("Actions", {}).get("#ComputerSystem.Reset", {})
        target = action.get("target") or f"{self.system_path()}/Actions/ComputerSystem.Reset"
        self.request("POST", str(target), {"ResetType": self.reset_type})

    def power_state(self, host: str) -> PowerState:
        state = str(self.request("GET", self.system_path()).get("PowerState", "")).lower()
        if state == "off":
            return PowerState.OFF
        return PowerState.ON if state in _ON else PowerState.UNKNOWN


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: the request (with its credentials) is not sent again."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _decode(raw: bytes, method: str, path: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise FenceError(f"redfish {method} {path}: reply is not JSON") from None
    return data if isinstance(data, dict) else {}
