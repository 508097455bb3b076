"""Fence agents: confirm-off semantics, ipmitool, Redfish and SSH against local fakes.

Everything runs on this machine: a fake ``ipmitool`` on PATH, a tiny Redfish service on
127.0.0.1 and a paramiko SSH server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paramiko  # type: ignore[import-untyped]
import pytest

from fleet.core.errors import InvalidInput
from fleet.core.failover import FenceResult
from workers.fencing import ManualAgent, PowerState, agent_for, register, run_fence
from workers.fencing.base import FenceError, SystemClock
from workers.fencing.ipmi import IpmiAgent, parse_power_status
from workers.fencing.redfish import RedfishAgent
from workers.fencing.ssh import SshAgent
from workers.fencing.stub import FakeClock, StubAgent

# -- the confirm-off rule (stub agent) ------------------------------------------------


def test_stub_ok_is_confirmed_off() -> None:
    clock = FakeClock()
    out = StubAgent(clock=clock, off_after_s=2.0).fence("h1", 10.0, clock)
    assert out.ok and out.state is PowerState.OFF
    assert 2.0 <= out.elapsed_s < 3.0
    assert out.event() == FenceResult("h1", True, "power off confirmed", False)


def test_power_off_accepted_but_never_off_is_a_timeout_failure() -> None:
    clock = FakeClock()
    agent = StubAgent(clock=clock, script=["ignore"], resend_s=3.0)
    out = agent.fence("h1", 10.0, clock)
    assert not out.ok and out.state is PowerState.ON
    assert "timed out" in out.detail
    assert out.elapsed_s == pytest.approx(10.0)
    assert agent.calls.count("off h1") >= 3  # re-sent while the host still said on


def test_resend_after_a_lost_command_succeeds() -> None:
    clock = FakeClock()
    agent = StubAgent(clock=clock, script=["ignore", "ok"], resend_s=2.0)
    out = agent.fence("h1", 10.0, clock)
    assert out.ok and agent.calls.count("off h1") == 2


def test_refused_power_off_fails_at_once() -> None:
    clock = FakeClock()
    out = StubAgent(clock=clock, script=["fail"]).fence("h1", 10.0, clock)
    assert not out.ok and "refused" in out.detail and out.elapsed_s == 0.0


def test_hanging_device_is_a_failure() -> None:
    clock = FakeClock()
    out = StubAgent(clock=clock, script=["hang"], hang_s=30.0).fence("h1", 10.0, clock)
    assert not out.ok and "did not answer" in out.detail


def test_unreadable_or_unknown_state_never_counts_as_off() -> None:
    for status in ("error", "unknown"):
        clock = FakeClock()
        out = StubAgent(clock=clock, status=[status]).fence("h1", 5.0, clock)
        assert not out.ok and out.state is PowerState.UNKNOWN
        assert "timed out" in out.detail


def test_status_recovering_after_errors_confirms() -> None:
    clock = FakeClock()
    out = StubAgent(clock=clock, status=["error", "error", "true"]).fence("h1", 5.0, clock)
    assert out.ok


def test_run_fence_never_raises() -> None:
    class Broken(StubAgent):
        def fence(self, host: str, timeout_s: float, clock: Any) -> Any:
            raise FenceError("boom")

    out = run_fence(Broken(), "h1", 1.0, FakeClock())
    assert not out.ok and "boom" in out.detail


def test_manual_agent_needs_an_operator() -> None:
    out = ManualAgent().fence("h1", 10.0, SystemClock())
    assert not out.ok and out.needs_operator
    assert "fleet host confirm-down h1" in out.detail
    assert out.event().needs_operator
    with pytest.raises(FenceError):
        ManualAgent().power_off("h1")


# -- factory ----------------------------------------------------------------------------


def test_factory_per_host_default_and_templating() -> None:
    config = {"h1": {"agent": "ipmi", "address": "10.0.0.1"},
              "*": {"agent": "redfish", "url": "https://{host}-bmc.example"}}
    h1 = agent_for("h1", config)
    assert isinstance(h1, IpmiAgent) and h1.address == "10.0.0.1"
    h2 = agent_for("h2", config)
    assert isinstance(h2, RedfishAgent) and h2.url == "https://h2-bmc.example"


def test_factory_without_entry_is_manual() -> None:
    agent = agent_for("h9", {})
    assert isinstance(agent, ManualAgent) and agent.kind == "manual"


def test_factory_rejects_bad_config() -> None:
    with pytest.raises(InvalidInput, match="unknown agent 'nope'"):
        agent_for("h1", {"h1": {"agent": "nope"}})
    with pytest.raises(InvalidInput, match="h1"):
        agent_for("h1", {"h1": {"agent": "ipmi", "adress": "typo"}})
    with pytest.raises(InvalidInput, match="status_host"):
        agent_for("h1", {"h1": {"agent": "ssh", "address": "a", "known_hosts": "k"}})


def test_factory_register_custom_agent() -> None:
    register("lab-test", lambda **kw: StubAgent(kind="lab-test", **kw))
    agent = agent_for("h1", {"h1": {"agent": "lab-test", "off_after_s": 1.0}})
    assert agent.kind == "lab-test"


# -- ipmitool ---------------------------------------------------------------------------

FAKE_IPMITOOL = r'''
import json, os, sys, time
state_file = os.environ["FAKE_IPMI_STATE"]
mode = os.environ.get("FAKE_IPMI_MODE", "ok")
with open(state_file + ".log", "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:],
                          "password": os.environ.get("IPMI_PASSWORD", "")}) + "\n")
if mode == "fail":
    print("Error: Unable to establish IPMI v2 / RMCP+ session", file=sys.stderr)
    sys.exit(1)
if mode == "hang":
    time.sleep(5)
state = open(state_file).read().strip() if os.path.exists(state_file) else "on"
if sys.argv[-3:] == ["chassis", "power", "off"]:
    if mode != "stays_on":
        open(state_file, "w").write("off")
    print("Chassis Power Control: Down/Off")
elif sys.argv[-3:] == ["chassis", "power", "status"]:
    print(f"Chassis Power is {state}")
'''


@pytest.fixture
def fake_ipmitool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "bin" / "ipmitool"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n{FAKE_IPMITOOL}")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_IPMI_STATE", str(tmp_path / "power"))
    return tmp_path / "power"


def _ipmi_log(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(f"{state}.log").read_text().splitlines()]


def test_ipmi_powers_off_and_confirms(fake_ipmitool: Path) -> None:
    agent = IpmiAgent("10.0.0.1", username="admin", password="s3cret", poll_s=0.05)
    out = agent.fence("h1", 5.0, SystemClock())
    assert out.ok, out.detail
    calls = _ipmi_log(fake_ipmitool)
    assert calls[0]["argv"] == ["-I", "lanplus", "-H", "10.0.0.1", "-U", "admin", "-E",
                                "chassis", "power", "off"]
    assert calls[1]["argv"][-3:] == ["chassis", "power", "status"]
    assert all("s3cret" not in c["argv"] and c["password"] == "s3cret" for c in calls)


def test_ipmi_reads_its_password_from_an_owner_only_file(fake_ipmitool: Path,
                                                         tmp_path: Path) -> None:
    secret = tmp_path / "ipmi-h1"
    secret.write_text("fr0m-file\n")
    secret.chmod(0o600)
    out = IpmiAgent("10.0.0.1", username="admin", password_file=str(secret),
                    poll_s=0.05).fence("h1", 5.0, SystemClock())
    assert out.ok, out.detail
    assert all(c["password"] == "fr0m-file" for c in _ipmi_log(fake_ipmitool))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_password_file_others_can_read_is_refused_and_nothing_is_sent(
        fake_ipmitool: Path, tmp_path: Path, mode: int) -> None:
    secret = tmp_path / "ipmi-h1"
    secret.write_text("leaked")
    secret.chmod(mode)
    out = IpmiAgent("10.0.0.1", username="admin", password_file=str(secret),
                    poll_s=0.05).fence("h1", 1.0, SystemClock())
    assert not out.ok and "chmod 600" in out.detail and "leaked" not in out.detail
    assert not Path(f"{fake_ipmitool}.log").exists()  # ipmitool never ran
    with pytest.raises(FenceError, match="readable by group or others"):
        RedfishAgent("https://bmc", username="fence", password_file=str(secret))._headers()


def test_ipmi_error_is_a_failure(fake_ipmitool: Path, monkeypatch: pytest.MonkeyPatch,
                                 ) -> None:
    monkeypatch.setenv("FAKE_IPMI_MODE", "fail")
    out = IpmiAgent("10.0.0.1").fence("h1", 5.0, SystemClock())
    assert not out.ok and "RMCP+" in out.detail


def test_ipmi_hang_is_a_timeout(fake_ipmitool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_IPMI_MODE", "hang")
    out = IpmiAgent("10.0.0.1", command_timeout_s=0.3).fence("h1", 5.0, SystemClock())
    assert not out.ok and "no answer within 0.3s" in out.detail


def test_ipmi_stays_on_is_a_timeout(fake_ipmitool: Path, monkeypatch: pytest.MonkeyPatch,
                                    ) -> None:
    monkeypatch.setenv("FAKE_IPMI_MODE", "stays_on")
    out = IpmiAgent("10.0.0.1", poll_s=0.1).fence("h1", 0.5, SystemClock())
    assert not out.ok and out.state is PowerState.ON


def test_ipmi_missing_binary(tmp_path: Path) -> None:
    agent = IpmiAgent("10.0.0.1", ipmitool=str(tmp_path / "absent"))
    out = agent.fence("h1", 1.0, SystemClock())
    assert not out.ok and "cannot run" in out.detail


def test_ipmi_status_parsing() -> None:
    assert parse_power_status("Chassis Power is off\n") is PowerState.OFF
    assert parse_power_status("Chassis Power is on") is PowerState.ON
    assert parse_power_status("garbage") is PowerState.UNKNOWN


# -- Redfish ----------------------------------------------------------------------------


class _Bmc:
    """State of the fake Redfish service."""

    def __init__(self) -> None:
        self.power = "On"
        self.ignore_reset = False
        self.delay_s = 0.0
        self.posts: list[dict[str, Any]] = []
        self.auth = "Basic " + base64.b64encode(b"fence:pw").decode()
        self.redirect_to = ""
        self.seen_auth: list[str] = []


SYSTEM = "/redfish/v1/Systems/1"


class _RedfishHandler(BaseHTTPRequestHandler):
    bmc: _Bmc

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == self.bmc.auth:
            return True
        self._reply(401, {"error": "unauthorized"})
        return False

    def do_GET(self) -> None:
        self.bmc.seen_auth.append(self.headers.get("Authorization", ""))
        if self.bmc.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.bmc.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self._authorized():
            return
        threading.Event().wait(self.bmc.delay_s)
        if self.path == "/redfish/v1/Systems":
            self._reply(200, {"Members": [{"@odata.id": SYSTEM}]})
        elif self.path == SYSTEM:
            reset = {"target": f"{SYSTEM}/Actions/ComputerSystem.Reset"}
            self._reply(200, {"PowerState": self.bmc.power,
                              "Actions": {"#ComputerSystem.Reset": reset}})
        else:
            self._reply(404, {})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != f"{SYSTEM}/Actions/ComputerSystem.Reset":
            self._reply(404, {})
            return
        self.bmc.posts.append(body)
        if body.get("ResetType") == "ForceOff" and not self.bmc.ignore_reset:
            self.bmc.power = "Off"
        self.send_response(204)
        self.end_headers()


def _handler(bmc: _Bmc) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_RedfishHandler,), {"bmc": bmc})


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out on purpose break the pipe


@contextlib.contextmanager
def _serving() -> Iterator[tuple[str, _Bmc]]:
    bmc = _Bmc()
    server = _QuietServer(("127.0.0.1", 0), _handler(bmc))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bmc
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def redfish() -> Iterator[tuple[str, _Bmc]]:
    with _serving() as served:
        yield served


def test_redfish_refuses_a_redirect_and_keeps_its_credentials(
        redfish: tuple[str, _Bmc]) -> None:
    """A BMC (or whoever answers in its place) that redirects gets no second request: the
    credentials never reach the other address."""
    url, bmc = redfish
    with _serving() as (other_url, other):
        bmc.redirect_to = other_url
        agent = RedfishAgent(url, SYSTEM, "fence", "pw", allow_http=True)
        out = agent.fence("h1", 1.0, SystemClock())
    assert not out.ok and "redirected (HTTP 307)" in out.detail, out.detail
    assert bmc.seen_auth and other.seen_auth == []  # asked once, here only
    assert bmc.power == "On" and bmc.posts == []


def test_redfish_refuses_plain_http_unless_allowed() -> None:
    with pytest.raises(FenceError, match="plain HTTP"):
        RedfishAgent("http://bmc")
    assert RedfishAgent("http://bmc", allow_http=True).url == "http://bmc"
    assert RedfishAgent("https://bmc/").url == "https://bmc"


def test_redfish_force_off_then_poll(redfish: tuple[str, _Bmc]) -> None:
    url, bmc = redfish
    agent = RedfishAgent(url, username="fence", password="pw", poll_s=0.05, allow_http=True)
    out = agent.fence("h1", 5.0, SystemClock())
    assert out.ok, out.detail
    assert bmc.posts == [{"ResetType": "ForceOff"}]
    assert agent.system == "/redfish/v1/Systems/1"


def test_redfish_already_off_is_not_reset(redfish: tuple[str, _Bmc]) -> None:
    url, bmc = redfish
    bmc.power = "Off"
    agent = RedfishAgent(url, username="fence", password="pw", allow_http=True)
    out = agent.fence("h1", 5.0, SystemClock())
    assert out.ok and bmc.posts == []


def test_redfish_bad_credentials_fail(redfish: tuple[str, _Bmc]) -> None:
    url, _ = redfish
    out = RedfishAgent(url, username="fence", password="no",
                       allow_http=True).fence("h1", 5.0, SystemClock())
    assert not out.ok and "HTTP 401" in out.detail


def test_redfish_never_off_times_out(redfish: tuple[str, _Bmc]) -> None:
    url, bmc = redfish
    bmc.ignore_reset = True
    agent = RedfishAgent(url, "/redfish/v1/Systems/1", "fence", "pw", poll_s=0.05,
                         allow_http=True)
    out = agent.fence("h1", 0.4, SystemClock())
    assert not out.ok and out.state is PowerState.ON and "timed out" in out.detail


def test_redfish_slow_bmc_is_a_failure(redfish: tuple[str, _Bmc]) -> None:
    url, bmc = redfish
    bmc.delay_s = 0.5
    agent = RedfishAgent(url, "/redfish/v1/Systems/1", "fence", "pw", command_timeout_s=0.2,
                         allow_http=True)
    out = agent.fence("h1", 5.0, SystemClock())
    assert not out.ok
    assert "no answer" in out.detail or "timed out" in out.detail


def test_redfish_unreachable_service_fails() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = RedfishAgent(f"http://127.0.0.1:{port}", "/redfish/v1/Systems/1", allow_http=True)
    out = agent.fence("h1", 1.0, SystemClock())
    assert not out.ok and "refused" in out.detail.lower()


def test_redfish_rejects_non_http_url() -> None:
    with pytest.raises(FenceError):
        RedfishAgent("ftp://bmc")


# -- SSH --------------------------------------------------------------------------------


class _SshServer:
    """A paramiko SSH server on 127.0.0.1 that records commands and answers them."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.host_key = paramiko.ECDSAKey.generate()
        self.answers = answers
        self.commands: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        outer = self
        got = threading.Event()
        asked: list[str] = []

        class Iface(paramiko.ServerInterface):  # type: ignore[misc]
            def check_channel_request(self, kind: str, chanid: int) -> int:
                return int(paramiko.OPEN_SUCCEEDED)

            def get_allowed_auths(self, username: str) -> str:
                return "publickey"

            def check_auth_publickey(self, username: str, key: Any) -> int:
                return int(paramiko.AUTH_SUCCESSFUL)

            def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
                asked.append(command.decode())
                outer.commands.append(command.decode())
                got.set()
                return True

        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        try:
            transport.start_server(server=Iface())
            chan = transport.accept(2.0)
            if chan is None or not got.wait(2.0):
                return
            code, out = self.answers.get(asked[0], (0, ""))
            chan.sendall(out.encode())
            chan.send_exit_status(code)
            chan.close()
        except (paramiko.SSHException, EOFError, OSError):
            return
        finally:
            threading.Event().wait(0.05)
            transport.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(1.0)
        self.sock.close()


@pytest.fixture
def sshd() -> Iterator[_SshServer]:
    server = _SshServer({"fence-status h1": (0, "off\n"), "fence-status h2": (0, "on\n"),
                         "fence-status h3": (3, "")})
    yield server
    server.close()


@pytest.fixture
def client_key(tmp_path: Path) -> str:
    path = tmp_path / "id_ecdsa"
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return str(path)


def _known_hosts(path: Path, port: int, key: Any) -> str:
    keys = paramiko.HostKeys()
    keys.add(f"[127.0.0.1]:{port}", key.get_name(), key)
    keys.save(str(path))
    return str(path)


def _ssh(sshd: _SshServer, known: str, key: str, **kw: Any) -> SshAgent:
    opts: dict[str, Any] = {"status_host": "127.0.0.1", "status_port": sshd.port,
                            "status_command": "fence-status {host}"}
    opts.update(kw)
    return SshAgent("127.0.0.1", known, username="fence", key_file=key, port=sshd.port,
                    power_off_command="poweroff -f", command_timeout_s=2.0, poll_s=0.05,
                    **opts)


def test_ssh_unknown_host_key_is_rejected(sshd: _SshServer, client_key: str,
                                          tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    out = _ssh(sshd, str(empty), client_key).fence("h1", 2.0, SystemClock())
    assert not out.ok and "not found in known_hosts" in out.detail
    assert sshd.commands == []


def test_ssh_changed_host_key_is_rejected(sshd: _SshServer, client_key: str,
                                          tmp_path: Path) -> None:
    other = paramiko.ECDSAKey.generate()
    known = _known_hosts(tmp_path / "known_hosts", sshd.port, other)
    out = _ssh(sshd, known, client_key).fence("h1", 2.0, SystemClock())
    assert not out.ok and "host key does not match" in out.detail
    assert sshd.commands == []


def test_ssh_missing_known_hosts_fails(sshd: _SshServer, client_key: str,
                                       tmp_path: Path) -> None:
    out = _ssh(sshd, str(tmp_path / "absent"), client_key).fence("h1", 2.0, SystemClock())
    assert not out.ok and "known_hosts file" in out.detail


def test_ssh_client_uses_reject_policy_and_only_the_given_file(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    class Spy:
        def load_host_keys(self, path: str) -> None:
            seen["file"] = path

        def set_missing_host_key_policy(self, policy: Any) -> None:
            seen["policy"] = policy

        def connect(self, *args: Any, **kw: Any) -> None:
            seen["connect"] = kw
            raise paramiko.SSHException("stop here")

        def close(self) -> None:
            pass

    known = tmp_path / "kh"
    known.write_text("")
    agent = SshAgent("10.9.9.9", str(known), confirm="unreachable", client_factory=Spy)
    with pytest.raises(FenceError):
        agent.power_off("h1")
    assert seen["file"] == str(known)
    assert isinstance(seen["policy"], paramiko.RejectPolicy)
    assert seen["connect"]["allow_agent"] is False and seen["connect"]["look_for_keys"] is False


def test_ssh_power_off_then_status_host_confirms(sshd: _SshServer, client_key: str,
                                                 tmp_path: Path) -> None:
    known = _known_hosts(tmp_path / "known_hosts", sshd.port, sshd.host_key)
    out = _ssh(sshd, known, client_key).fence("h1", 3.0, SystemClock())
    assert out.ok, out.detail
    assert sshd.commands[:2] == ["poweroff -f", "fence-status h1"]


def test_ssh_status_on_or_failing_never_confirms(sshd: _SshServer, client_key: str,
                                                 tmp_path: Path) -> None:
    known = _known_hosts(tmp_path / "known_hosts", sshd.port, sshd.host_key)
    agent = _ssh(sshd, known, client_key)
    assert agent.power_state("h2") is PowerState.ON
    assert agent.power_state("h3") is PowerState.UNKNOWN


def _refusing(errno_value: int) -> Any:
    class Client:
        def load_host_keys(self, path: str) -> None:
            pass

        def set_missing_host_key_policy(self, policy: Any) -> None:
            pass

        def connect(self, *args: Any, **kw: Any) -> None:
            err = OSError(errno_value, os.strerror(errno_value))
            raise paramiko.ssh_exception.NoValidConnectionsError({("10.9.9.9", 22): err})

        def close(self) -> None:
            pass

    return Client


def test_ssh_unreachable_mode_needs_power_off_sent_and_silence(tmp_path: Path) -> None:
    import errno

    known = tmp_path / "kh"
    known.write_text("")
    clock = FakeClock()
    agent = SshAgent("10.9.9.9", str(known), confirm="unreachable", unreachable_for_s=5.0,
                     client_factory=_refusing(errno.ETIMEDOUT), monotonic=clock.now)
    assert agent.power_state("h1") is PowerState.UNKNOWN  # nothing sent: not evidence
    agent._sent["h1"] = clock.now()
    assert agent.power_state("h1") is PowerState.UNKNOWN
    clock.advance(5.0)
    assert agent.power_state("h1") is PowerState.OFF
    refused = SshAgent("10.9.9.9", str(known), confirm="unreachable",
                       client_factory=_refusing(errno.ECONNREFUSED), monotonic=clock.now)
    refused._sent["h1"] = 0.0
    assert refused.power_state("h1") is PowerState.ON  # a kernel still answers


def test_ssh_isolated_host_cannot_be_fenced(tmp_path: Path) -> None:
    import errno

    known = tmp_path / "kh"
    known.write_text("")
    clock = FakeClock()
    agent = SshAgent("10.9.9.9", str(known), confirm="unreachable", unreachable_for_s=1.0,
                     client_factory=_refusing(errno.EHOSTUNREACH), monotonic=clock.now)
    out = agent.fence("h1", 10.0, clock)
    assert not out.ok and "power-off failed" in out.detail


def test_views_show_the_fence_agent_the_fencing_process_published() -> None:
    from workers.fencing import kinds, published_kind

    config = {"h1": {"agent": "ipmi", "address": "x", "password": "s"}, "*": {"agent": "sim"}}
    published = {"by": "controller@c1", "at": 1.0, "agents": kinds(config)}
    assert published["agents"] == {"h1": "ipmi", "*": "sim"}  # kinds only, no secrets
    assert published_kind("h1", published) == "ipmi (as run by controller@c1)"
    assert published_kind("h9", published) == "sim (as run by controller@c1)"
    assert published_kind("h1", None).startswith("unknown: no controller has published")
