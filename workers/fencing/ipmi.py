"""IPMI fencing through ``ipmitool``: ``chassis power off``, then poll ``chassis power status``.

The password never appears on the command line: it is passed in the ``IPMI_PASSWORD``
environment variable of the child and ``ipmitool -E`` reads it from there. Each call is
bounded by ``command_timeout_s``; a timeout raises ``FenceTimeout``, a non-zero exit or a
missing binary raises ``FenceError``. The state is read from ipmitool's own words
("Chassis Power is off" / "Chassis Power is on"); anything else is ``unknown``.

Config keys: ``address`` (BMC host name or IP), ``username``, ``password`` or
``password_file``, ``interface`` (``lanplus``), ``ipmitool`` (binary), ``extra_args``,
``command_timeout_s``, ``poll_s``, ``resend_s``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from workers.fencing.base import (
    ConfirmingAgent,
    FenceError,
    FenceTimeout,
    PowerState,
    read_secret,
)


@dataclass
class IpmiAgent(ConfirmingAgent):
    """One host's BMC reached with ipmitool."""

    address: str
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""
    interface: str = "lanplus"
    ipmitool: str = "ipmitool"
    extra_args: list[str] = field(default_factory=list)
    command_timeout_s: float = 10.0
    poll_s: float = 1.0
    resend_s: float = 5.0
    kind: str = "ipmi"

    def _password(self) -> str:
        if self.password or not self.password_file:
            return self.password
        return read_secret(self.password_file, "ipmi")

    def command(self, *args: str) -> list[str]:
        """The argv for one ipmitool call (without any secret)."""
        argv = [self.ipmitool, "-I", self.interface, "-H", self.address]
        if self.username:
            argv += ["-U", self.username]
        if self.password or self.password_file:
            argv.append("-E")
        return [*argv, *self.extra_args, *args]

    def _run(self, *args: str) -> str:
        env = dict(os.environ)
        password = self._password()
        if password:
            env["IPMI_PASSWORD"] = password
        try:
            done = subprocess.run(self.command(*args), env=env, capture_output=True,
                                  text=True, timeout=self.command_timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise FenceTimeout(f"ipmi {self.address}: no answer within "
                               f"{self.command_timeout_s:g}s") from None
        except OSError as exc:
            raise FenceError(f"ipmi: cannot run {self.ipmitool}: {exc.strerror}") from None
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise FenceError(f"ipmi {self.address}: {why[-1] if why else 'exit code'} "
                             f"({done.returncode})")
        return done.stdout

    def power_off(self, host: str) -> None:
        self._run("chassis", "power", "off")

    def power_state(self, host: str) -> PowerState:
        return parse_power_status(self._run("chassis", "power", "status"))


def parse_power_status(output: str) -> PowerState:
    """ipmitool's "Chassis Power is on|off" as a ``PowerState``."""
    words = output.strip().lower().split()
    if words[-1:] == ["off"] and "power" in words:
        return PowerState.OFF
    if words[-1:] == ["on"] and "power" in words:
        return PowerState.ON
    return PowerState.UNKNOWN
