"""SSH fencing with paramiko and verified host keys.

Host keys are always verified: the client loads only the configured ``known_hosts`` file
and uses ``RejectPolicy``, so an unknown or changed key refuses the connection (a
``FenceError``) and no command is sent. Authentication is by ``key_file``; agent and
default-key lookups are off.

``power_off`` runs ``power_off_command`` (default ``systemctl poweroff --force --force``:
no clean shutdown, the kernel powers off at once) on the host; the connection dropping
mid-command is expected and counts as sent. How power-off is *confirmed* is chosen by
``confirm``:

* ``status`` (default): ``status_command`` runs over SSH on ``status_host`` — a machine
  that sees the host's power from outside (a PDU or management controller, the lab's
  power switch, the physical host of a nested one) — and its first word of output must
  be ``off`` (``on`` is on; anything else, or a non-zero exit, is unknown).
* ``unreachable``: the host counts as off once, after power-off was sent to it by this
  agent, every connection attempt fails with a timeout or "no route to host" for
  ``unreachable_for_s`` seconds. A *refused* connection means a kernel still answers,
  so it counts as on. This mode cannot tell power loss from network loss: a host that
  was reachable enough to accept the power-off command and then goes silent is taken as
  off. Use it only where that trade-off is acceptable; if power-off could not be sent at
  all (the host is isolated), fencing fails.

Config keys: ``address``, ``port``, ``username``, ``key_file``, ``known_hosts`` (required),
``power_off_command``, ``confirm``, ``status_host``, ``status_port``, ``status_command``
(``{host}`` is replaced by the fleet host name), ``unreachable_for_s``,
``command_timeout_s``, ``poll_s``, ``resend_s``.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko  # type: ignore[import-untyped]

from workers.fencing.base import ConfirmingAgent, FenceError, FenceTimeout, PowerState


class Unreachable(FenceError):
    """The TCP connection timed out or had no route: nothing answered."""


class Refused(FenceError):
    """The TCP connection was refused: a kernel answered."""


@dataclass
class SshAgent(ConfirmingAgent):
    """One host fenced over SSH; see the module doc."""

    address: str
    known_hosts: str
    username: str = "root"
    key_file: str = ""
    port: int = 22
    power_off_command: str = "systemctl poweroff --force --force"
    confirm: str = "status"
    status_host: str = ""
    status_port: int = 22
    status_command: str = ""
    unreachable_for_s: float = 10.0
    command_timeout_s: float = 10.0
    poll_s: float = 1.0
    resend_s: float = 30.0
    kind: str = "ssh"
    client_factory: Callable[[], Any] = field(default=paramiko.SSHClient, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)
    _sent: dict[str, float] = field(default_factory=dict, repr=False)
    _silent_since: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.confirm not in ("status", "unreachable"):
            raise FenceError(f"ssh: confirm must be 'status' or 'unreachable': {self.confirm}")
        if self.confirm == "status" and not (self.status_host and self.status_command):
            raise FenceError("ssh: confirm='status' needs status_host and status_command")

    # -- connections ------------------------------------------------------------------
    def connect(self, address: str, port: int) -> Any:
        """A client connected to ``address`` with a verified host key."""
        if not Path(self.known_hosts).is_file():
            raise FenceError(f"ssh: known_hosts file {self.known_hosts} is missing")
        client = self.client_factory()
        client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(address, port=port, username=self.username,
                           key_filename=self.key_file or None, timeout=self.command_timeout_s,
                           banner_timeout=self.command_timeout_s,
                           auth_timeout=self.command_timeout_s,
                           allow_agent=False, look_for_keys=False)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise FenceError(f"ssh {address}: host key does not match known_hosts "
                             f"({exc.key.get_name()})") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            raise _classify(address, exc.errors.values()) from None
        except TimeoutError:
            client.close()
            raise Unreachable(f"ssh {address}: connection timed out") from None
        except paramiko.SSHException as exc:
            client.close()
            raise FenceError(f"ssh {address}: {exc}") from None
        except OSError as exc:
            client.close()
            raise _classify(address, [exc]) from None
        return client

    def run(self, address: str, port: int, command: str) -> tuple[int, str]:
        """Run ``command`` on ``address``; its exit status and standard output."""
        client = self.connect(address, port)
        try:
            _, stdout, _ = client.exec_command(command, timeout=self.command_timeout_s)
            out = stdout.read().decode(errors="replace")
            return int(stdout.channel.recv_exit_status()), out
        except TimeoutError:
            raise FenceTimeout(f"ssh {address}: {command!r} timed out") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise FenceError(f"ssh {address}: {command!r} failed: {exc}") from None
        finally:
            client.close()

    # -- the agent ----------------------------------------------------------------------
    def power_off(self, host: str) -> None:
        client = self.connect(self.address, self.port)
        try:
            client.exec_command(self.power_off_command, timeout=self.command_timeout_s)
        except (paramiko.SSHException, OSError, EOFError):
            pass  # the host going away mid-command is what we asked for
        finally:
            client.close()
        self._sent[host] = self.monotonic()
        self._silent_since.pop(host, None)

    def power_state(self, host: str) -> PowerState:
        if self.confirm == "status":
            return self._status(host)
        return self._reachability(host)

    def _status(self, host: str) -> PowerState:
        code, out = self.run(self.status_host, self.status_port,
                             self.status_command.replace("{host}", host))
        words = out.strip().lower().split()
        if code != 0 or not words:
            return PowerState.UNKNOWN
        return {"off": PowerState.OFF, "on": PowerState.ON}.get(words[0], PowerState.UNKNOWN)

    def _reachability(self, host: str) -> PowerState:
        try:
            self.connect(self.address, self.port).close()
        except Unreachable:
            if host not in self._sent:
                return PowerState.UNKNOWN
            since = self._silent_since.setdefault(host, self.monotonic())
            silent = self.monotonic() - since >= self.unreachable_for_s
            return PowerState.OFF if silent else PowerState.UNKNOWN
        except FenceError:
            self._silent_since.pop(host, None)
            return PowerState.ON
        self._silent_since.pop(host, None)
        return PowerState.ON


_SILENT = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH})


def _classify(address: str, errors: Any) -> FenceError:
    """Refused (a kernel answered) or unreachable (nothing answered)."""
    errs = list(errors)
    if any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) ==
           errno.ECONNREFUSED for e in errs):
        return Refused(f"ssh {address}: connection refused")
    if all(isinstance(e, TimeoutError) or getattr(e, "errno", None) in _SILENT
           for e in errs) and errs:
        return Unreachable(f"ssh {address}: unreachable")
    return FenceError(f"ssh {address}: {errs[0] if errs else 'cannot connect'}")
