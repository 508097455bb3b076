"""E2E fixtures: one real KVM lab (2 hosts) shared by the whole session.

The lab uses its own directory, bridge, subnet, Redis port and namespace names, so it
never touches an operator's ``fleet lab``. Without root or the lab's prerequisites the
tests skip, saying why; under CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from fleet.lab import lab
from fleet.lab.config import LabConfig
from fleet.lab.deps import missing_deps
from tests.conftest import require

E2E_LAB = {
    "root": "/var/lib/fleet-lab-e2e", "hosts": 3, "bridge": "fle2ebr0", "subnet": "10.77.9",
    "redis_port": 6399, "prefix": "e2e", "netns_prefix": "fle2e-", "veth_prefix": "fle2e-",
    "lan_missing": "h2",
}
TIMINGS: dict[str, float] = {}
FENCE = {"*": {"agent": "lab", "netns": "fle2e-{host}"}, "h2": {"agent": "manual"}}
LAB_PROCESS_ENV = {
    # lab agents, controller and monitor inherit these: quick leases, lab fencing, and
    # h2 fenced by hand only (its "fence made to fail" scenario)
    "FLEET_MOVE_LEASE_S": "4", "FLEET_RECONCILE_INTERVAL_S": "1",
    "FLEET_POLL_INTERVAL_S": "0.5", "FLEET_FENCE": json.dumps(FENCE),
    "FLEET_LAB_FLOWER_PORT": "5599",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def lab_cfg() -> Iterator[LabConfig]:
    """A 3-host lab up for the session (no agents: tests start them when they need them)."""
    require(os.geteuid() == 0, "the e2e lab needs root (network namespaces, libvirtd)")
    missing = missing_deps()
    require(not missing, f"lab prerequisites missing: {', '.join(missing)}"
                         " (run scripts/install-lab-deps as root)")
    os.environ.update(LAB_PROCESS_ENV)
    cfg = LabConfig(**E2E_LAB, flower_port=5599)  # type: ignore[arg-type]
    lab.down(cfg.path, expected=cfg)  # leftovers of an interrupted run (never a default lab)
    started = time.monotonic()
    lab.up(cfg, agents=False, install=False)
    TIMINGS["lab up (3 hosts)"] = time.monotonic() - started
    yield cfg
    lab.down(cfg.path, expected=cfg)


@pytest.fixture
def cli_env(lab_cfg: LabConfig) -> dict[str, str]:
    """Environment for ``fleet lab`` commands against the e2e lab."""
    return {"FLEET_LAB_DIR": lab_cfg.root}


@pytest.fixture
def timings() -> dict[str, float]:
    """Durations to report at the end of the run (name -> seconds)."""
    return TIMINGS


LOG_TAIL_LINES = 40


def _log_tails(cfg: LabConfig) -> str:
    """The last lines of every lab process's log: what CI shows of a failed e2e test,
    since the lab (and its logs) is gone once the session ends."""
    parts = []
    for log in sorted(cfg.log_dir.glob("*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError as exc:
            lines = [f"(unreadable: {exc})"]
        if not lines:
            continue
        parts.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
    return "\n".join(parts) or f"(no logs in {cfg.log_dir})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    args = getattr(item, "funcargs", {})
    cfg = args.get("fleet_lab") or args.get("lab_cfg")
    if report.failed and call.when == "call" and isinstance(cfg, LabConfig):
        report.sections.append(("lab logs", _log_tails(cfg)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("lab timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f}s")


@pytest.fixture(scope="session")
def fleet_lab(lab_cfg: LabConfig) -> Iterator[LabConfig]:
    """The lab with every fleet process up (agents, controller, monitor, Flower), and the
    CLI of this process pointed at it. Built with ``lab up`` (which also reconnects every
    host), so a host that an earlier, failed test left killed or cut off does not fail the
    rest too."""
    from fleet.lab.procs import wait_until
    from fleet.lab.services import lab_store
    from fleet.settings import load_settings
    from tasks.app import reconfigure

    lab.up(lab_cfg, install=False)
    saved = os.environ.get("FLEET_KEYS_DIR")
    os.environ.update(lab_cfg.client_env())
    reconfigure(load_settings())
    store = lab_store(lab_cfg)
    wait_until(lambda: all(store.heartbeat(h) for h in lab_cfg.host_names()), 60.0,
               "lab agents' heartbeats")
    yield lab_cfg
    for key in ("FLEET_REDIS_URL", "FLEET_PREFIX", "FLEET_LAB_DIR", "FLEET_KEYS_DIR"):
        os.environ.pop(key, None)
    if saved:
        os.environ["FLEET_KEYS_DIR"] = saved
    reconfigure(load_settings())  # nothing in this process may talk to the lab once it is down
