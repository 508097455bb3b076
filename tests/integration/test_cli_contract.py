"""The CLI's contract: bad input is one line and exit 2; the demo runs to the end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest

from fleet.cli.processes import wait_for
from fleet.store import Store
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("args", "needle"), [
    (["vm", "migrate", "no-such-vm"], "unknown VM"),
    (["vm", "migrate", "bad name!"], "malformed VM name"),
    (["vm", "migrate", "cli-1", "--to", "h9"], "unknown host"),
    (["vm", "migrate", "cli-1", "--to", "h1"], "already runs on h1"),
    (["vm", "migrate"], "Missing argument"),
    (["job", "show", "zzz"], "malformed job id"),
    (["host", "show", "h9"], "unknown host"),
    (["vm", "show", "no-such-vm"], "unknown VM"),
    (["vm", "show", "bad name!"], "malformed VM name"),
    (["host", "show", "bad/name"], "malformed host name"),
    (["job", "show", "0123456789abcdef"], "unknown job"),
    (["agent"], "missing option --host"),
    (["agent", "--host", "h1", "--driver", "xen"], "unknown driver"),
    (["no-such-command"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_2(cluster: Cluster, args: list[str],
                                          needle: str) -> None:
    if cluster.store.find_vm("cli-1") is None:
        cluster.add_vm("cli-1", "h1")
    before = sorted(cluster.store.r.scan_iter(match=cluster.env["FLEET_PREFIX"] + ":job*"))
    done = cluster.fleet(*args)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    after = sorted(cluster.store.r.scan_iter(match=cluster.env["FLEET_PREFIX"] + ":job*"))
    assert before == after  # nothing written


def test_broken_config_exits_2(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, "-m", "fleet.cli.main", "hosts"],
                          env={**os.environ, **cluster.env, "FLEET_POLL_INTERVAL_S": "9"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "poll_interval_s" in done.stderr


def _written(cluster: Cluster) -> list[str]:
    """Every key of the cluster's prefix but heartbeats and Celery's (they change alone)."""
    keys = cluster.store.r.scan_iter(match=cluster.env["FLEET_PREFIX"] + ":*")
    return sorted(k for k in keys if ":heartbeat" not in k and "celery" not in k
                  and "_kombu" not in k and "unacked" not in k)


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["hosts"], {"FLEET_FENCE": "notjson"}, "FLEET_FENCE is not valid JSON"),
    (["hosts"], {"FLEET_FENCE": '{"*": {"agent": "nope"}}'}, "unknown agent 'nope'"),
    (["hosts"], {"FLEET_FENCE": '{"h1": {"agent": "ipmi"}}'}, "fence config for h1"),
    (["hosts"], {"FLEET_MOVE_LEASE_S": "inf"}, "move_lease_s"),
    (["hosts"], {"FLEET_REDIS_URL": "redis://127.0.0.1:6379/99999"}, "database"),
    (["vm", "stop", "pol-1", "--timeout", "inf"], {}, "--timeout"),
    (["vm", "stop", "pol-1", "--timeout", "1e309"], {}, "--timeout"),
    (["vm", "stop", "pol-1", "--timeout", "5", "--force"], {}, "exclude each other"),
    (["vm", "policy", "pol-1", "--bandwidth-mib-s", "inf"], {}, "--bandwidth-mib-s"),
    (["vm", "policy", "pol-1", "--timeout-min-s", "1e23"], {}, "--timeout-min-s"),
    (["vm", "policy", "pol-1", "--max-downtime-ms", "18446744073709551617"], {},
     "--max-downtime-ms"),
    (["host", "drain", "h1", "--dry-run", "--wait"], {}, "exclude each other"),
    (["vm", "policy", "pol-1", "--postcopy", "--no-postcopy"], {}, "exclude each other"),
    (["jobs", "--state", "done"], {}, "--state must be one of"),
    (["jobs", "--since", "soon"], {}, "--since must be a duration"),
    (["vm", "policy", "pol-1", "--auto-converge", "--no-auto-converge"], {},
     "exclude each other"),
])
def test_bad_values_and_config_are_one_line_exit_2_and_write_nothing(
        cluster: Cluster, args: list[str], env: dict[str, str], needle: str) -> None:
    if cluster.store.find_vm("pol-1") is None:
        cluster.add_vm("pol-1", "h1")
    before = (_written(cluster), cluster.store.get_vm("pol-1").to_dict(),
              cluster.store.get_host("h1").state)
    done = cluster.fleet(*args, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert before == (_written(cluster), cluster.store.get_vm("pol-1").to_dict(),
                      cluster.store.get_host("h1").state)


def test_a_redis_that_does_not_answer_is_one_line_exit_1(cluster: Cluster) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        done = cluster.fleet("hosts",
                             env={"FLEET_REDIS_URL": f"redis://:S3cret@127.0.0.1:{port}/0"})
    assert done.returncode == 1, done.stderr
    assert "cannot reach Redis" in done.stderr and "S3cret" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_policy_flags_set_and_clear(cluster: Cluster) -> None:
    if cluster.store.find_vm("pol-2") is None:
        cluster.add_vm("pol-2", "h1")
    for flags, expected in ((["--postcopy", "--no-auto-converge"], (True, False)),
                            (["--no-postcopy"], (False, False))):
        done = cluster.fleet("vm", "policy", "pol-2", *flags, "--json")
        assert done.returncode == 0, done.stderr
        policy = json.loads(done.stdout)
        assert (policy["allow_postcopy"], policy["allow_auto_converge"]) == expected


def test_jobs_show_age_and_say_when_rows_were_left_out(cluster: Cluster) -> None:
    if cluster.store.find_vm("pol-1") is None:
        cluster.add_vm("pol-1", "h1")
    for host in ("h2", "h1", "h2"):
        assert cluster.fleet("vm", "migrate", "pol-1", "--to", host).returncode == 0
        wait_for(lambda h=host: cluster.store.get_vm("pol-1").host == h, 60,
                 f"pol-1 on {host}")
    done = cluster.fleet("jobs", "--limit", "2", "--since", "1h")
    assert done.returncode == 0, done.stderr
    assert "age" in done.stdout and "more job(s) match" in done.stdout
    rows = json.loads(cluster.fleet("jobs", "--limit", "2", "--json").stdout)
    assert len(rows) == 2 and rows[0]["created_at"] >= rows[1]["created_at"]


def test_a_mistyped_variable_is_named_with_its_likely_meaning(cluster: Cluster) -> None:
    done = cluster.fleet("hosts", env={"FLEET_HEARTBEAT_INTERVL_S": "1"})
    assert done.returncode == 0, done.stderr
    assert "FLEET_HEARTBEAT_INTERVL_S is not a fleet setting (did you mean " \
        "FLEET_HEARTBEAT_INTERVAL_S?)" in done.stderr


def _vm_show(cluster: Cluster, name: str) -> dict[str, Any]:
    shown = cluster.fleet("vm", "show", name, "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def test_second_migrate_of_a_moving_vm_returns_its_job(cluster: Cluster) -> None:
    cluster.add_vm("twice-1", "h1", memory_mib=8192, dirty=10)
    wait_for(lambda: _vm_show(cluster, "twice-1")["reported_by"] == {"h1": "running"}, 30,
             "h1's heartbeat to report twice-1")
    first = cluster.fleet("vm", "migrate", "twice-1", "--to", "h2")
    second = cluster.fleet("vm", "migrate", "twice-1", "--to", "h3")
    assert first.returncode == 0 and second.returncode == 0
    assert first.stdout.strip() == second.stdout.strip()
    assert "already moving" in second.stderr
    shown = _vm_show(cluster, "twice-1")  # vm show names the job that moves it
    assert shown["job"] == first.stdout.strip() and shown["host"] in ("h1", "h2")
    watched = cluster.fleet("job", "watch", first.stdout.strip())
    assert watched.returncode == 0 and "succeeded" in watched.stdout
    assert cluster.where("twice-1") == ["h2"]


def test_demo_once(redis_url: str) -> None:
    """The demo migrates web-1, then cuts a host's power and shows the failover job's
    per-VM outcome; every VM of that host runs elsewhere afterwards."""
    prefix = f"demo-{uuid.uuid4().hex[:6]}"
    store = Store.connect(redis_url, "bystander")
    store.r.set("bystander:keep", "1")
    env = {**os.environ, "FLEET_REDIS_URL": redis_url, "FLEET_PREFIX": prefix,
           "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "fleet.cli.main", "demo", "--once",
                           "--hosts", "3", "--vms", "5"], env=env, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "migrate" in out and "succeeded" in out and "Flower" in out
    cut = re.search(r"cutting the power of (h\d) \((\d+) HA VMs\)", out)
    assert cut is not None, out
    victim = cut.group(1)
    assert out.index("web-1 now runs on") < cut.start() < out.index("VMs of failover job")
    outcomes = re.findall(r"(\S+)\s+│ restarted on (h\d)", out)
    assert len(outcomes) == int(cut.group(2)) and all(h != victim for _, h in outcomes), out
    assert store.r.get("bystander:keep") == "1"
    demo = Store.connect(redis_url, f"{prefix}-demo")
    vms = {vm.name: vm for vm in demo.list_vms()}
    assert len(vms) == 5 and all(vm.host != victim for vm in vms.values())
    assert all(vms[name].host == host for name, host in outcomes)  # the table tells true
    assert vms["web-1"].state == "running"
    demo.purge()
