"""Which libvirt URIs fleet opens: one from the store must not make libvirt run a command,
skip a TLS check or speak in clear unless the configuration allows it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import MigrationParams, MigrationTarget, PermanentError
from fleet.core.libvirt_uri import check_libvirt_uri
from workers.hypervisors import libvirt as lv

ALLOWED = ["qemu:///system", "qemu:///session", "qemu+tls://h1/system",
           "qemu+tls://10.0.0.2:16514/system", "qemu+ssh://root@h1/system",
           "qemu+ssh://[fd00::2]/system"]
REFUSED = [
    ("qemu+ext:///system?command=/tmp/x.sh", "parameters"),
    ("qemu+ext://h1/system", "transport"),
    ("qemu+tls://h1/system?no_verify=1", "parameters"),
    ("qemu+ssh://h1/system?netcat=/tmp/nc", "parameters"),
    ("qemu+ssh://h1/system?command=/tmp/x", "parameters"),
    ("qemu+unix:///system?socket=/tmp/evil.sock", "parameters"),
    ("qemu:///system?socket=/tmp/evil.sock", "parameters"),
    ("qemu+unix:///system", "transport"),
    ("qemu+tcp://10.0.0.2/system", "in clear"),
    ("qemu+tls:///system", "no host"),
    ("qemu+tls://h1/", "path"),
    ("qemu+tls://h1/system/../x", "path"),
    ("xen://h1/system", "transport"),
    ("qemu+tls://user@h1/system", "a user belongs"),
    ("qemu+tls://h1:99999/system", "malformed"),
    ("qemu+tls://h1/system#frag", "parameters"),
]


@pytest.mark.parametrize("uri", ALLOWED)
def test_the_local_daemon_and_tls_or_ssh_peers_are_opened(uri: str) -> None:
    assert check_libvirt_uri(uri) == uri


@pytest.mark.parametrize(("uri", "why"), REFUSED)
def test_commands_parameters_and_other_transports_are_refused(uri: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_libvirt_uri(uri)


def test_plain_tcp_only_where_the_configuration_allows_it() -> None:
    assert check_libvirt_uri("qemu+tcp://10.0.0.2/system", allow_tcp=True)
    with pytest.raises(InvalidInput, match="parameters"):  # and never with parameters
        check_libvirt_uri("qemu+tcp://10.0.0.2/system?command=/tmp/x", allow_tcp=True)


def test_the_adapter_refuses_a_bad_uri_before_libvirt_is_touched(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def tripwire() -> None:
        raise AssertionError("libvirt was reached")

    monkeypatch.setattr(lv, "_libvirt", tripwire)
    monkeypatch.setattr(lv, "ensure_event_loop", tripwire)
    evil = lv.LibvirtHypervisor("h2", "qemu+ext:///system?command=/tmp/x.sh")
    with pytest.raises(PermanentError, match="parameters"):
        evil.lookup("web-1")
    here = lv.LibvirtHypervisor("h1")  # a migration target from the store, as root
    with pytest.raises(PermanentError, match="in clear"):
        here.migrate("web-1", MigrationTarget("h2", "qemu+tcp://10.0.0.2/system"),
                     MigrationParams())


def test_the_agent_registers_tls_unless_tcp_is_allowed_and_then_warns(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fleet.cli.main import _migration_uri

    assert _migration_uri("", "10.0.0.2", allow_tcp=False) == "qemu+tls://10.0.0.2/system"
    assert capsys.readouterr().err == ""
    assert _migration_uri("", "10.0.0.2", allow_tcp=True) == "qemu+tcp://10.0.0.2/system"
    assert "in clear" in capsys.readouterr().err
    assert _migration_uri("", "", allow_tcp=False) == ""  # no address: none registered


def test_an_agent_given_a_command_uri_exits_2_with_one_line() -> None:
    env = {**os.environ, "FLEET_REDIS_URL": "redis://127.0.0.1:1/0", "FLEET_PREFIX": "t"}
    done = subprocess.run([sys.executable, "-m", "fleet.cli.main", "agent", "--host", "h1",
                           "--driver", "libvirt", "--migration-uri",
                           "qemu+ext:///system?command=/tmp/x.sh"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 2 and "parameters" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
