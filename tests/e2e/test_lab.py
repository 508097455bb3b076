"""The KVM lab, end to end: real namespaces, libvirtd, QEMU and live migrations.

One lab (2 hosts) serves the session (see conftest). Tests run in file order; the
faults restore what they break, and the last test takes the lab down and checks that
nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from fleet.cli.lab import lab_app
from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import (
    DestinationError,
    DomainGone,
    DomainState,
    HypervisorError,
    JobStats,
    MigrationParams,
    MigrationTarget,
    PermanentError,
)
from fleet.lab import lab, network
from fleet.lab.config import LabConfig
from fleet.lab.guests import create_lab_vm
from fleet.lab.hosts import libvirtd_listening
from fleet.lab.procs import alive, wait_until
from fleet.lab.services import lab_store, start_agents, start_controller
from fleet.lab.state import load_state, save_state
from workers.hypervisors.libvirt import LibvirtHypervisor
from workers.procfs import netns_processes

pytestmark = pytest.mark.e2e
runner = CliRunner()


def hv(cfg: LabConfig, host: str) -> LibvirtHypervisor:
    return cfg.hypervisor(host)


def virsh_hostname(cfg: LabConfig, host: str) -> str:
    out = subprocess.run(["virsh", "-c", cfg.uri(host), "hostname"], capture_output=True,
                         text=True, timeout=15, check=False)
    return out.stdout.strip()


def migrate_polling(src: LibvirtHypervisor, name: str, dest: LibvirtHypervisor,
                    params: MigrationParams) -> tuple[list[JobStats], BaseException | None]:
    """Run ``src.migrate`` in a thread while polling ``job_stats`` every 0.2 s."""
    samples: list[JobStats] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            src.migrate(name, MigrationTarget(dest.host, dest.uri), params)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    while thread.is_alive():
        stats = src.job_stats(name)
        if stats is not None:
            samples.append(stats)
        thread.join(0.2)
    return samples, (errors[0] if errors else None)


def test_hosts_answer_virsh_over_tcp(lab_cfg: LabConfig) -> None:
    for host in lab_cfg.host_names():
        assert virsh_hostname(lab_cfg, host) == host


def test_status_and_env_cli(lab_cfg: LabConfig, cli_env: dict[str, str]) -> None:
    result = runner.invoke(lab_app, ["status", "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["up"] and data["redis"]["alive"]
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts["h2"]["address"] == lab_cfg.address("h2") == "10.77.9.12"
    assert all(h["libvirtd_alive"] and h["libvirtd_listening"] for h in hosts.values())
    env = runner.invoke(lab_app, ["env"], env=cli_env)
    assert env.stdout.splitlines() == [f"export FLEET_REDIS_URL={lab_cfg.redis_url}",
                                       f"export FLEET_PREFIX={lab_cfg.prefix}",
                                       f"export FLEET_KEYS_DIR={lab_cfg.root}/keys"]


def test_bad_input_is_invalid_input(lab_cfg: LabConfig, cli_env: dict[str, str]) -> None:
    for argv in (["kill", "h9"], ["isolate", "x"], ["vm", "create", "bad name", "--host", "h1"],
                 ["vm", "create", "ok", "--host", "h1", "--dirty-mib-s", "3"]):
        result = runner.invoke(lab_app, argv, env=cli_env)
        assert isinstance(result.exception, InvalidInput), argv


def test_up_is_idempotent(lab_cfg: LabConfig, timings: dict[str, float]) -> None:
    before = load_state(lab_cfg.path)
    assert before is not None
    started = time.monotonic()
    lab.up(lab_cfg, agents=False, install=False)
    timings["lab up again (idempotent)"] = time.monotonic() - started
    after = load_state(lab_cfg.path)
    assert after is not None and after.hosts == before.hosts and after.redis == before.redis


def test_live_migration_of_tiny_guest(lab_cfg: LabConfig, cli_env: dict[str, str],
                                      timings: dict[str, float]) -> None:
    result = runner.invoke(lab_app, ["vm", "create", "tiny1", "--host", "h1"], env=cli_env)
    assert result.exit_code == 0, result.output
    record = lab_store(lab_cfg).get_vm("tiny1")
    assert record.host == "h1" and record.memory_mib == 64 and "<domain" in record.definition
    h1, h2 = hv(lab_cfg, "h1"), hv(lab_cfg, "h2")
    assert h1.lookup("tiny1").state is DomainState.RUNNING
    started = time.monotonic()
    _, error = migrate_polling(h1, "tiny1", h2, MigrationParams(max_downtime_ms=300))
    timings["live migration, 64 MiB OS-less guest"] = time.monotonic() - started
    assert error is None
    assert h2.lookup("tiny1").state is DomainState.RUNNING
    assert not h2.lookup("tiny1").migrating
    assert h1.job_stats("tiny1") is None
    with pytest.raises(DomainGone):
        h1.lookup("tiny1")
    assert [d.name for d in h1.list_domains()] == []
    h2.destroy("tiny1")
    h2.destroy("tiny1")  # absent is fine
    with pytest.raises(DomainGone):
        h2.lookup("tiny1")


def test_unreachable_destination_is_a_destination_error(lab_cfg: LabConfig) -> None:
    create_lab_vm(lab_cfg, "tiny2", "h1")
    h1 = hv(lab_cfg, "h1")
    nowhere = MigrationTarget("h9", f"qemu+tcp://{lab_cfg.bridge_address}:1/system")
    with pytest.raises(DestinationError):
        h1.migrate("tiny2", nowhere, MigrationParams())
    assert h1.lookup("tiny2").state is DomainState.RUNNING
    with pytest.raises(PermanentError):
        h1.migrate("tiny2", MigrationTarget("h2"), MigrationParams())
    with pytest.raises(DomainGone):
        h1.migrate("absent", MigrationTarget("h2", lab_cfg.uri("h2")), MigrationParams())
    h1.destroy("tiny2")


def test_abort_keeps_the_guest_on_its_source(lab_cfg: LabConfig) -> None:
    """A booting Linux guest (TCG) migrated at 1 MiB/s is still copying when aborted."""
    create_lab_vm(lab_cfg, "os1", "h1", os_guest=True)
    h1, h2 = hv(lab_cfg, "h1"), hv(lab_cfg, "h2")
    samples: list[JobStats] = []

    def abort_when_copying() -> None:
        def copying() -> bool:
            stats = h1.job_stats("os1")
            if stats is not None and stats.processed_mib > 0:
                samples.append(stats)
            return len(samples) >= 2

        wait_until(copying, 20.0, "migration progress", interval_s=0.2)
        h1.set_max_downtime("os1", 500)
        h1.abort_job("os1")

    aborter = threading.Thread(target=abort_when_copying)
    aborter.start()
    with pytest.raises(HypervisorError) as caught:
        h1.migrate("os1", MigrationTarget("h2", lab_cfg.uri("h2")),
                   MigrationParams(bandwidth_mib_s=1))
    aborter.join()
    assert isinstance(caught.value, PermanentError), caught.value
    assert samples[-1].total_mib > 200 and samples[-1].remaining_mib > 0
    assert samples[-1].processed_mib >= samples[0].processed_mib
    assert h1.lookup("os1").state is DomainState.RUNNING
    assert h1.job_stats("os1") is None
    h1.abort_job("os1")  # no job: fine
    wait_until(lambda: "os1" not in [d.name for d in h2.list_domains()], 10.0,
               "the destination to drop its incoming domain")
    h1.destroy("os1")


def test_postcopy_switch_completes_a_slow_migration(lab_cfg: LabConfig,
                                                    timings: dict[str, float]) -> None:
    """At 1 MiB/s pre-copy would take minutes; switching to post-copy finishes it."""
    create_lab_vm(lab_cfg, "os2", "h1", os_guest=True)
    h1, h2 = hv(lab_cfg, "h1"), hv(lab_cfg, "h2")

    def switch_when_copying() -> None:
        def copying() -> bool:
            stats = h1.job_stats("os2")
            return stats is not None and stats.processed_mib > 0

        wait_until(copying, 20.0, "migration progress", interval_s=0.2)
        h1.start_postcopy("os2")

    switcher = threading.Thread(target=switch_when_copying)
    switcher.start()
    started = time.monotonic()
    h1.migrate("os2", MigrationTarget("h2", lab_cfg.uri("h2")),
               MigrationParams(bandwidth_mib_s=1, postcopy=True,
                               extra={"bandwidth_postcopy_mib_s": "500"}))
    switcher.join()
    timings["post-copy migration, 256 MiB Linux guest at 1 MiB/s pre-copy"] = (
        time.monotonic() - started)
    assert h2.lookup("os2").state is DomainState.RUNNING
    with pytest.raises(DomainGone):
        h1.lookup("os2")
    h2.destroy("os2")


def test_isolate_and_heal(lab_cfg: LabConfig, cli_env: dict[str, str]) -> None:
    assert runner.invoke(lab_app, ["isolate", "h2"], env=cli_env).exit_code == 0
    assert not network.link_up(lab_cfg, "h2")
    assert not libvirtd_listening(lab_cfg, "h2")
    status = lab.status(lab_cfg.path, domains=False)
    h2 = next(h for h in status["hosts"] if h["name"] == "h2")
    assert h2["isolated"] and h2["libvirtd_alive"]  # cut off, still running
    assert runner.invoke(lab_app, ["heal", "h2"], env=cli_env).exit_code == 0
    wait_until(lambda: libvirtd_listening(lab_cfg, "h2"), 10.0, "h2 to answer again")
    assert virsh_hostname(lab_cfg, "h2") == "h2"


def test_kill_is_power_loss_and_up_brings_the_host_back(
        lab_cfg: LabConfig, cli_env: dict[str, str], timings: dict[str, float]) -> None:
    create_lab_vm(lab_cfg, "victim", "h2")
    ns = lab_cfg.netns("h2")
    before = set(netns_processes(ns))
    assert len(before) >= 4  # holder, virtlogd, libvirtd (+reaper), qemu
    result = runner.invoke(lab_app, ["kill", "h2"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert netns_processes(ns) == []
    assert not any(alive(p) for p in before)
    assert not libvirtd_listening(lab_cfg, "h2")
    assert virsh_hostname(lab_cfg, "h1") == "h1"  # the other host is untouched
    started = time.monotonic()
    lab.up(lab_cfg, agents=False, install=False)
    timings["bring a killed host back (lab up)"] = time.monotonic() - started
    assert virsh_hostname(lab_cfg, "h2") == "h2"
    victim = hv(lab_cfg, "h2").lookup("victim")  # persistent definition survived
    assert victim.state is DomainState.SHUTOFF
    hv(lab_cfg, "h2").destroy("victim")


def test_agents_heartbeat_and_fleet_migrates_for_real(lab_cfg: LabConfig,
                                                      timings: dict[str, float]) -> None:
    state = load_state(lab_cfg.path)
    assert state is not None
    start_agents(lab_cfg, state)
    start_controller(lab_cfg, state)
    save_state(state)
    store = lab_store(lab_cfg)
    wait_until(lambda: all(store.heartbeat(h) for h in lab_cfg.host_names()), 30.0,
               "agent heartbeats")
    create_lab_vm(lab_cfg, "web1", "h1")
    env = {**os.environ, "FLEET_REDIS_URL": lab_cfg.redis_url, "FLEET_PREFIX": lab_cfg.prefix}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fleet.cli.main", "vm", "migrate", "web1",
                           "--to", "h2", "--wait", "--json"], capture_output=True, text=True,
                          env=env, timeout=90, check=False)
    timings["fleet vm migrate --wait (agents, 64 MiB)"] = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert hv(lab_cfg, "h2").lookup("web1").state is DomainState.RUNNING
    with pytest.raises(DomainGone):
        hv(lab_cfg, "h1").lookup("web1")
    assert store.get_vm("web1").host == "h2"
