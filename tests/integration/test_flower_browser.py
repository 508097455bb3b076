"""Flower, started the way the project starts it, seen in headless Chromium.

A sim migration runs through the real agent and controller; Flower (basic auth, the same
Celery app config from ``FLEET_*``) must list it in its API and on its tasks page, which a
headless Chromium renders. The screenshot is kept in ``artifacts/`` at the repo root.

Chromium only ever talks to 127.0.0.1; basic auth travels as an ``Authorization`` header
set through the DevTools protocol (credentials in the URL are not reliable in Chromium).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.cli.flower import FlowerClient, basic_auth
from fleet.cli.processes import free_port, wait_for
from tasks.routing import FLOWER_COLUMNS
from tests.conftest import require
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

USER, PASSWORD = "oncall", "flower-test-pw"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1600,1000",
]


@pytest.fixture(scope="module")
def flower(cluster: Cluster) -> FlowerClient:
    """Flower on a free loopback port, connected to the cluster's broker."""
    client = FlowerClient(free_port(), USER, PASSWORD)
    port = client.port
    cluster.procs.spawn("flower", [
        sys.executable, "-m", "celery", "-A", "tasks.app:app", "flower", FLOWER_COLUMNS,
        f"--port={port}", "--address=127.0.0.1", f"--basic-auth={USER}:{PASSWORD}"],
        cluster.env)
    # Flower only knows tasks whose events it received: wait until its event receiver has
    # heard the workers' heartbeats before anything runs.
    wait_for(client.sees_workers, 60,
             f"Flower to see the workers (logs in {cluster.procs.log_dir})")
    return client


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
            "chromium and chromium-driver are not installed (scripts/install-browser-deps)")
    require(importlib.util.find_spec("selenium") is not None,
            "selenium is not installed (pip install -e '.[dev]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    log = tmp_path / "chromedriver.log"
    driver = webdriver.Chrome(options=options,
                              service=Service(CHROMEDRIVER, log_output=str(log)))
    try:
        driver.set_page_load_timeout(30)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                               {"headers": {"Authorization": basic_auth(USER, PASSWORD)}})
        yield driver
    finally:
        driver.quit()


def test_flower_lists_the_migration(cluster: Cluster, flower: FlowerClient, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cluster.add_vm("flower-1", "h1", memory_mib=1024, dirty=20)
    done = cluster.fleet("vm", "migrate", "flower-1", "--to", "h2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"

    # The API: a fleet.vm.migrate task that names the VM, its source and destination.
    def migrations() -> list[dict[str, Any]]:
        return [t for t in flower.tasks("fleet.vm.migrate") if "'flower-1'" in str(t.get("kwargs"))
                and t.get("state") == "SUCCESS"]

    wait_for(lambda: bool(migrations()), 30,
             "Flower's API to list the finished migration")
    task = migrations()[0]
    assert task["name"] == "fleet.vm.migrate"
    for expected in ("'vm': 'flower-1'", "'source': 'h1'", "'destination': 'h2'", "'job_id'"):
        assert expected in task["kwargs"], task["kwargs"]
    assert task["worker"], task  # a real worker ran it, nothing eager

    # The tasks page in a browser: DataTables fills the table from /tasks/datatable.
    browser.get(f"http://127.0.0.1:{flower.port}/tasks")

    def rows(driver: Any) -> list[str]:
        found = driver.find_elements(By.CSS_SELECTOR, "table#tasks-table tbody tr")
        return [r.text for r in found if "fleet.vm.migrate" in r.text and task["uuid"] in r.text]

    WebDriverWait(browser, 30, poll_frequency=0.2).until(rows)
    time.sleep(0.3)  # let the table finish painting before the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    _keep(browser, "flower-tasks")
    row = rows(browser)[0]
    assert "SUCCESS" in row and "agent-h1@" in row, row  # state, and the source's agent ran it
    assert "Flower" in browser.title

    # The task's own page shows what it did: the VM, source and destination, and its result.
    browser.get(f"http://127.0.0.1:{flower.port}/task/{task['uuid']}")
    WebDriverWait(browser, 30, poll_frequency=0.2).until(
        lambda d: "flower-1" in d.find_element(By.TAG_NAME, "body").text)
    _keep(browser, "flower-task")
    page = browser.find_element(By.TAG_NAME, "body").text
    for expected in ("fleet.vm.migrate", "SUCCESS", "'vm': 'flower-1'", "'source': 'h1'",
                     "'destination': 'h2'", "succeeded"):
        assert expected in page, (expected, page)


def test_flower_shows_a_running_migration_live(cluster: Cluster, flower: FlowerClient,
                                              browser: Any) -> None:
    """While it runs, the task is PROGRESS with the runner's summary, from task-progress."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cluster.add_vm("flower-2", "h1", memory_mib=4096, dirty=20)
    started = cluster.fleet("vm", "migrate", "flower-2", "--to", "h3")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()

    def running() -> list[dict[str, Any]]:
        return [t for t in flower.tasks("fleet.vm.migrate") if "'flower-2'" in str(t.get("kwargs"))
                and t.get("state") == "PROGRESS" and "%" in str(t.get("result"))]

    wait_for(lambda: bool(running()), 30,
             "Flower to show the migration's progress")
    task = running()[0]
    browser.get(f"http://127.0.0.1:{flower.port}/task/{task['uuid']}")
    WebDriverWait(browser, 30, poll_frequency=0.2).until(
        lambda d: "PROGRESS" in d.find_element(By.TAG_NAME, "body").text)
    page = browser.find_element(By.TAG_NAME, "body").text
    ARTIFACTS.mkdir(exist_ok=True)
    _keep(browser, "flower-task-running")
    assert "fleet.vm.migrate" in page and "'vm': 'flower-2'" in page
    assert re.search(r"\d+% .*MiB/s", page), page  # e.g. "42% 310 MiB/s it2 eta 3.1s"

    wait_for(lambda: cluster.store.get_job(job_id).terminal, 120, "the migration to end")
    assert cluster.store.get_job(job_id).state == "succeeded"
    wait_for(lambda: any(t["uuid"] == task["uuid"] and t["state"] == "SUCCESS"
                         for t in flower.tasks("fleet.vm.migrate")), 30,
             "Flower to show the migration's success")


def test_a_failed_migration_is_a_failure_in_flower(cluster: Cluster, flower: FlowerClient,
                                                  browser: Any) -> None:
    """The destination fails before the switch-over and the operator named it (--to): the
    run gives the move back to the controller, which has nowhere else to put it. Flower
    lists the task as FAILURE with the VM and the reason."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from workers.hypervisors.sim import FAIL_BEFORE_SWITCHOVER

    cluster.add_vm("flower-3", "h1", memory_mib=1024, dirty=20)
    cluster.sim("h1").inject(FAIL_BEFORE_SWITCHOVER, 1)
    done = cluster.fleet("vm", "migrate", "flower-3", "--to", "h2", "--wait", "--json")
    cluster.sim("h1").clear_faults()
    assert done.returncode == 1 and json.loads(done.stdout)["state"] == "failed", done.stdout

    def failed() -> list[dict[str, Any]]:
        return [t for t in flower.tasks("fleet.vm.migrate") if "'flower-3'" in str(t.get("kwargs"))
                and t.get("state") == "FAILURE"]

    wait_for(lambda: bool(failed()), 30, "Flower to list the failed migration as FAILURE")
    task = failed()[0]
    assert "flower-3 h1 -> h2 pending" in str(task.get("exception") or task.get("result")), task
    browser.get(f"http://127.0.0.1:{flower.port}/tasks")

    def rows(driver: Any) -> list[str]:
        found = driver.find_elements(By.CSS_SELECTOR, "table#tasks-table tbody tr")
        return [r.text for r in found if task["uuid"] in r.text]

    WebDriverWait(browser, 30, poll_frequency=0.2).until(rows)
    # the operator's way in: the "Failed" filter of the task list
    browser.find_element(By.CSS_SELECTOR,
                         'button.task-state-filter[data-task-state="FAILURE"]').click()

    def filtered(driver: Any) -> list[str] | None:
        shown = [r.text for r in driver.find_elements(By.CSS_SELECTOR,
                                                       "table#tasks-table tbody tr")]
        return shown if shown and all("SUCCESS" not in r for r in shown) else None

    WebDriverWait(browser, 30, poll_frequency=0.2).until(filtered)
    time.sleep(0.3)
    ARTIFACTS.mkdir(exist_ok=True)
    _keep(browser, "flower-tasks-failed")
    shown = filtered(browser) or []
    row = next((r for r in shown if task["uuid"] in r), "")
    assert "FAILURE" in row and "flower-3" in row and "h1" in row, shown
    assert all("FAILURE" in r for r in shown), shown  # the filter hides the successes
    assert "flower-3 h1 -> h2" in row and "%" not in row, row  # the reason, not a sample


def _keep(browser: Any, name: str) -> None:
    """Save a screenshot and the rendered HTML as test artifacts."""
    shot = ARTIFACTS / f"{name}.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    (ARTIFACTS / f"{name}.html").write_text(browser.page_source)


def test_flower_refuses_without_credentials(cluster: Cluster, flower: FlowerClient) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{flower.port}/api/tasks", timeout=5)
    assert refused.value.code == 401
