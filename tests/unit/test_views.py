"""What the CLI's views say of VMs whose host is not well."""

from __future__ import annotations

from fleet.cli.views import shown_state, vm_rows
from fleet.core.models import VM, Host, Job, Move
from fleet.store import Store


def test_a_vm_of_a_silent_or_failed_host_says_so(store: Store) -> None:
    for name in ("h1", "h2", "h3"):
        store.put_host(Host(name, 8, 8192))
    store.beat("h1", {}, 60)
    store.beat("h3", {}, 60)
    store.set_host_state("h3", "fenced")
    for i, host in enumerate(("h1", "h2", "h3")):
        store.put_vm(VM(f"v{i}", f"u{i}", host, 1, 64))
    rows = {r["name"]: r for r in vm_rows(store)}
    assert [rows[f"v{i}"]["host_state"] for i in range(3)] == ["active", "down", "fenced"]
    assert [shown_state(rows[f"v{i}"]) for i in range(3)] == [
        "running", "running (host down)", "running (host fenced)"]
    assert rows["v1"]["state"] == "running"  # the record itself is untouched


def test_jobs_are_found_by_state_and_age_with_a_count_of_the_rest(store: Store) -> None:
    from fleet.core.models import JobKind, Move

    now = [1000.0]
    store.clock = lambda: now[0]
    made = []
    for i in range(5):
        now[0] = 1000.0 + 100 * i
        made.append(store.create_move_job(JobKind.MIGRATE, "t", [Move("", "", f"v{i}", "h1")]))
    store.update_job(made[4].id, lambda j: setattr(j, "state", "failed") or j)
    newest, more = store.find_jobs(limit=2)
    assert [j.id for j in newest] == [made[4].id, made[3].id] and more == 3
    failed, more = store.find_jobs(states=["failed"])
    assert [j.id for j in failed] == [made[4].id] and more == 0
    recent, more = store.find_jobs(since=1250.0, batch=1)
    assert [j.id for j in recent] == [made[4].id, made[3].id] and more == 0


def test_durations_and_ages_read_as_people_write_them() -> None:
    import pytest

    from fleet.cli.common import parse_duration
    from fleet.cli.views import human_age
    from fleet.core.errors import InvalidInput

    assert [parse_duration("--since", t) for t in ("90", "90s", "30m", "12h", "7d")] == [
        90, 90, 1800, 43200, 604800]
    for bad in ("soon", "inf", "1e309d", "-5m", ""):
        with pytest.raises(InvalidInput):
            parse_duration("--since", bad)
    assert [human_age(s) for s in (5, 75, 7300, 200000)] == ["5s", "1m", "2h", "2d"]


DAY = 1_796_205_600.0  # 2026-12-02T10:00:00Z


def _save(store: Store, job: Job, moves: list[Move]) -> Job:
    from fleet.store.records import dump

    job.moves = [m.id for m in moves]
    store.r.set(store.keys.job(job.id), dump(job))
    store.r.zadd(store.keys.jobs, {job.id: job.created_at})
    for move in moves:
        store.r.set(store.keys.move(move.id), dump(move))
    return job


def _text(renderable: object) -> str:
    from rich.console import Console

    out = Console(record=True, width=250)
    out.print(renderable)
    return out.export_text()


def test_times_durations_and_sizes_read_as_people_write_them() -> None:
    from fleet.cli.human import human_bytes, human_clock, human_duration, human_time, human_value

    assert human_time(DAY + 5.7) == "2026-12-02T10:00:05Z" and human_time(0.0) == ""
    assert human_clock(DAY + 65, DAY) == "10:01:05Z"
    assert human_clock(DAY + 86400, DAY) == "2026-12-03T10:00:00Z"
    assert [human_duration(s) for s in (0.42, 42, 185, 7800, 97200)] == [
        "0.4s", "42.0s", "3m 05s", "2h 10m", "1d 3h"]
    assert [human_bytes(m) for m in (1228.8, 512, 0.5, 3 * 1024 ** 2, 0)] == [
        "1.2 GiB", "512.0 MiB", "512.0 KiB", "3.0 TiB", "0 B"]
    assert human_value({"vm-h4-0": "running on h2", "vm-h4-1": "down"}) == (
        "vm-h4-0: running on h2, vm-h4-1: down")
    assert human_value({"ok": True, "tries": [1, 2], "limit": 300.0}) == (
        "ok: yes, tries: 1, 2, limit: 300")


def _moved(**changes: object) -> Move:
    move = Move("m1", "j1", "web-1", "h1", destination="h3", state="succeeded",
                started_at=DAY + 5, finished_at=DAY + 190, excluded=["h2"], planned="h2",
                progress={"percent": 63.0, "processed_mib": 1228.8, "remaining_mib": 700.0,
                          "downtime_ms": 250.0})
    for key, value in changes.items():
        setattr(move, key, value)
    return move


def test_a_succeeded_move_reads_100_percent_with_its_data_and_downtime(store: Store) -> None:
    from fleet.cli.job_table import MOVE_COLUMNS, move_cells
    from fleet.cli.job_views import job_detail

    job = _save(store, Job("j1", "migrate", "succeeded", "cli:ann@ops", "web-1",
                           created_at=DAY, started_at=DAY + 1, finished_at=DAY + 191),
                [_moved()])
    detail = job_detail(store, job, now=DAY + 500)
    move = detail["moves"][0]
    assert move["progress"]["percent"] == 100.0 and move["progress"]["remaining_mib"] == 0.0
    assert (move["transferred_mib"], move["downtime_ms"], move["duration_s"]) == (
        1228.8, 250.0, 185.0)
    assert detail["duration_s"] == 190.0 and "token" not in move
    cells = dict(zip(MOVE_COLUMNS, move_cells(move, DAY), strict=True))
    assert cells == {"vm": "web-1", "from": "h1", "to": "h3 (re-placed; tried h2)",
                     "state": "succeeded", "started": "10:00:05Z", "finished": "10:03:10Z",
                     "duration": "3m 05s", "moved": "1.2 GiB", "downtime": "250 ms",
                     "progress": "100 %", "error": ""}


def test_a_re_placed_move_never_shows_an_empty_destination_when_one_is_known() -> None:
    from fleet.cli.job_table import destination_text
    from fleet.cli.job_views import move_view

    def shown(move: Move) -> tuple[str, str]:
        view = move_view(move, DAY)
        return view["to"], destination_text(view)

    waiting = dict(state="pending", destination="", finished_at=0.0)
    assert shown(_moved(**waiting)) == ("", "re-placing (tried h2)")
    assert shown(_moved(**waiting, target="h4", excluded=["h2"])) == (
        "h4", "h4 (re-placed; tried h2)")
    assert shown(_moved(**waiting, planned="h5", excluded=[])) == ("h5", "h5")
    assert shown(_moved(state="failed", destination="")) == ("", "none (tried h2)")
    assert shown(_moved(excluded=[])) == ("h3", "h3")
    fresh = Move("m2", "j1", "db-1", "h1")
    assert shown(fresh) == ("", "to be placed") and move_view(fresh, DAY)["duration_s"] is None


def test_the_job_header_shows_who_when_and_how_long(store: Store) -> None:
    from fleet.cli.watch import summary_table

    job = _save(store, Job("j2", "drain", "succeeded", "cli:ann@ops", "h1",
                           created_at=DAY, started_at=DAY + 1, finished_at=DAY + 186.5),
                [_moved(id="m3", job_id="j2")])
    text = _text(summary_table(store, job))
    for needle in ("drain", "succeeded", "cli:ann@ops", "2026-12-02T10:00:00Z",
                   "2026-12-02T10:00:01Z", "2026-12-02T10:03:06Z", "3m 05s", "1.2 GiB",
                   "250 ms", "100 %", "h3 (re-placed; tried h2)"):
        assert needle in text, needle
    assert "1796205" not in text  # no epoch seconds


def test_a_failover_job_shows_one_outcome_per_vm(store: Store) -> None:
    from fleet.cli.job_views import job_detail, read_outcome
    from fleet.cli.watch import summary_table

    vms = {"vm-a": "running on h3", "vm-b": "down: host h1 is off; no host with room",
           "vm-c": "running on h2 (found there, not restarted)",
           "vm-d": "failed: start failed: no such image", "vm-e": "waiting for capacity",
           "vm-f": "down: host h1 is off; not HA", "vm-g": "restarting on h4",
           "vm-h": "failed: record moved to h5; skipped"}
    job = _save(store, Job("j3", "failover", "failed", "monitor:m1", "h1",
                           summary={"vms": vms, "duration_s": 12.0}, created_at=DAY,
                           started_at=DAY, finished_at=DAY + 12), [])
    detail = job_detail(store, job, now=DAY + 60)
    rows = {r["vm"]: (r["outcome"], r["host"]) for r in detail["outcomes"]}
    assert rows == {
        "vm-a": ("restarted on h3", "h3"), "vm-b": ("not restarted: no capacity", "h1"),
        "vm-c": ("found running on h2", "h2"),
        "vm-d": ("restart failed: start failed: no such image", "h1"),
        "vm-e": ("waiting for capacity", "h1"), "vm-f": ("not restarted: not HA", "h1"),
        "vm-g": ("restarting on h4", "h4"), "vm-h": ("not restarted: recorded on h5", "h5")}
    assert all(r["detail"] == vms[r["vm"]] for r in detail["outcomes"])
    text = _text(summary_table(store, job))
    assert "restarted on h3" in text and "not restarted: no capacity" in text
    assert "moves of job" not in text and "{'" not in text
    assert read_outcome("running on h3 (already)", "h1") == ("restarted on h3", "h3")


def test_tables_show_health_heartbeats_guards_and_policies_in_words() -> None:
    from fleet.cli.views import health_text, heartbeat_text, policy_rows, vm_fields
    from fleet.core.policy import PolicyConfig

    now = DAY + 100
    assert heartbeat_text({"age_s": 1.25, "agent": "a1", "hypervisor_ok": True,
                           "domains": 3}) == "1.2s ago, agent a1, hypervisor ok, 3 domain(s)"
    assert heartbeat_text(None) == "none: the agent is silent"
    assert health_text({"state": "suspect", "since": DAY + 88, "last_beat": DAY + 85,
                        "attempts": 0, "deadline": 0.0, "detail": "no heartbeat"}, now) == (
        "suspect for 12s (since 2026-12-02T10:01:28Z), last beat 15s ago: no heartbeat")
    shown = vm_fields({"policy": {}, "reported_by": {"h1": "running"},
                       "guard": {"restarts": [DAY + 40, DAY + 10], "gave_up": True}}, now)
    assert shown["guard"] == "restarts: 2, last 1m ago; gave up"
    assert shown["policy"] == "defaults"
    rows = {r[0]: r[1:] for r in policy_rows({"max_downtime_ms": 500}, PolicyConfig())}
    assert rows["max_downtime_ms"] == [500, "set for this VM"]
    assert rows["allow_postcopy"] == [False, "default"]


def test_a_committed_move_keeps_its_data_and_reads_complete() -> None:
    from workers.outcomes import completed

    last = {"percent": 97.5, "processed_mib": 2048.0, "remaining_mib": 3.0, "eta_s": 0.1,
            "downtime_ms": 120.0}
    assert completed(last) == {"percent": 100.0, "processed_mib": 2048.0,
                               "remaining_mib": 0.0, "eta_s": 0.0, "downtime_ms": 120.0}
    assert completed({}) == {"percent": 100.0}
