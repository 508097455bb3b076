"""Configuration: ``FLEET_*`` environment variables over an optional TOML file.

``FLEET_CONFIG`` names the TOML file (keys as the field names below, e.g.
``redis_url = "redis://..."``). Environment variables win over the file. Invalid
configuration raises ``InvalidInput`` with one line saying what is wrong.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleet.core.definition_rules import DEFAULT_ROOTS
from fleet.core.errors import InvalidInput

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}")


class Settings(BaseModel):
    """Every tunable of fleet, with production defaults (``load_settings`` reads them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_ride_out_s: float = Field(30.0, ge=0, le=600)
    """How long agents, controllers and monitors retry a Redis command whose connection
    failed (a Redis restart, a Sentinel promotion) before the command fails."""
    prefix: str = "fleet"
    heartbeat_interval_s: float = Field(1.0, gt=0)
    heartbeat_ttl_s: float = Field(5.0, gt=0)
    visibility_timeout_s: int = Field(6 * 3600, ge=600)
    move_lease_s: float = Field(15.0, gt=0)
    move_settle_s: float = Field(20.0, ge=0)
    move_unreachable_s: float = Field(120.0, ge=0)
    """How long a move's end is awaited while one of its hosts cannot be asked."""
    pending_job_after_s: float = Field(30.0, gt=0)
    """A job still pending this long after its creation lost its start message."""
    reconcile_interval_s: float = Field(5.0, gt=0)
    redeliver_after_s: float = Field(120.0, gt=0)
    retention_s: float = Field(7 * 86400.0, ge=60, le=366 * 86400.0)
    """Finished jobs, their moves and events, and audit events are deleted this long
    after they ended (the audit stream is also capped by length)."""
    poll_interval_s: float = Field(0.5, gt=0, le=1.0)
    migration_timeout_per_gib_s: float = Field(300.0, gt=0)
    migration_timeout_min_s: float = Field(60.0, gt=0)
    stall_timeout_s: float = Field(20.0, gt=0)
    max_downtime_ms: int = Field(300, gt=0)
    bandwidth_mib_s: float = Field(0.0, ge=0)
    migrate_retries: int = Field(3, ge=0, le=20)
    cpu_allocation_ratio: float = Field(4.0, gt=0)
    ram_allocation_ratio: float = Field(1.0, gt=0)
    reserved_host_memory_mib: int = Field(0, ge=0)
    drain_concurrency: int = Field(2, ge=1, le=64)
    failover_suspect_after_s: float = Field(3.0, gt=0)
    failover_down_after_s: float = Field(5.0, gt=0)
    failover_fence_timeout_s: float = Field(20.0, gt=0)
    failover_fence_grace_s: float = Field(5.0, ge=0)
    failover_fence_attempts: int = Field(3, ge=1)
    failover_fence_retry_s: float = Field(5.0, gt=0)
    failover_storm_share: float = Field(0.5, gt=0, le=1)
    failover_recover_timeout_s: float = Field(60.0, gt=0)
    failover_exclude_for_s: float = Field(60.0, gt=0)
    failover_lease_ttl_s: float = Field(5.0, gt=0)
    failover_witness: bool = True
    failover_witness_window_s: float = Field(3.0, ge=0)
    failover_witness_timeout_s: float = Field(1.0, gt=0)
    vmguard_enabled: bool = True
    vmguard_grace_s: float = Field(2.0, ge=0)
    vmguard_max_restarts: int = Field(3, ge=0)
    vmguard_window_s: float = Field(600.0, gt=0)
    vmguard_start_timeout_s: float = Field(30.0, gt=0)
    monitor_interval_s: float = Field(0.5, gt=0)
    inventory_interval_s: float = Field(2.0, gt=0)
    node_facts_interval_s: float = Field(60.0, gt=0)
    inventory_gone_after_s: float = Field(10.0, ge=0)
    shared_storage: list[str] = Field(default_factory=list)
    domain_roots: list[str] = Field(default_factory=lambda: list(DEFAULT_ROOTS))
    """Where the host paths of a definition fleet defines may lie (disks, kernels,
    firmware, logs, the emulator), besides ``shared_storage``
    (``fleet.core.definition_rules``)."""
    migration_allow_tcp: bool = False
    """Allow ``qemu+tcp`` peers (migrations and pre-flight in clear); otherwise only
    ``qemu+tls``/``qemu+ssh`` (``fleet.core.libvirt_uri``)."""
    keys_dir: str = ""
    """Where this machine's signing key and the trusted public keys are
    (``workers.signing``): work sent to hosts is signed, and unsigned work is refused."""
    signature_ttl_s: float = Field(3600.0, ge=10, le=7 * 86400.0)
    """How long a signed message stays valid after it was sent."""
    fence: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sim_speed: float = Field(1.0, gt=0)
    sim_bandwidth_mib_s: float = Field(1000.0, gt=0)
    sim_switch_gap_s: float = Field(0.2, ge=0, le=10)
    flower_port: int = Field(5555, gt=0, lt=65536)
    flower_user: str = "fleet"
    flower_password: str = "fleet"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value.startswith("sentinel://"):
            from fleet.core.sentinel_url import parse_sentinel

            parse_sentinel(value)
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or sentinel://")
        check_redis_url(value)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError("must be 1-41 letters, digits, '_', '.' or '-'")
        return value



def check_redis_url(url: str) -> None:
    """Raise ``ValueError`` unless a ``redis://``/``rediss://`` URL names a host (and a
    valid port and database) and a ``unix://`` URL a socket path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("names no socket path (unix:///path/to/redis.sock)")
        return
    if not parts.hostname:
        raise ValueError(f"names no host ({parts.scheme}://HOST[:PORT][/DB])")
    if port == 0:
        raise ValueError("names port 0")
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError(f"database {db!r} is not a number")


def _file_values(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise InvalidInput(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"config file {path}: {exc}") from None
    section = data.get("fleet", data)
    if not isinstance(section, dict):
        raise InvalidInput(f"config file {path}: [fleet] must be a table")
    return section


NOT_SETTINGS = frozenset({  # FLEET_* variables read by other parts: the lab, deploy files
    "CONFIG", "HOST", "HOST_ADDRESS", "CONTROL_HOST", "REDIS_PASSWORD", "NS", "VENV",
    "INTERLEAVINGS", "BENCH_DATA"})


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``FLEET_*`` variables that name no setting, each with the closest setting's
    variable ("" if none is close): a mistyped variable would otherwise do nothing."""
    fields = [f.upper() for f in Settings.model_fields]
    found = []
    for name in sorted(environ):
        key = name.removeprefix("FLEET_")
        if not name.startswith("FLEET_") or key in fields or key in NOT_SETTINGS \
                or key.startswith("LAB_"):
            continue
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.8)
        found.append((name, f"FLEET_{close[0]}" if close else ""))
    return found


_JSON_FIELDS = frozenset(name for name, field in Settings.model_fields.items()
                         if get_origin(field.annotation) in (list, dict))
"""Settings whose variables hold JSON (a list, a table); the others are plain values."""


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``FLEET_<NAME>`` variables (any case), JSON ones decoded."""
    given = {k.upper(): v for k, v in environ.items() if k.upper().startswith("FLEET_")}
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = given.get(f"FLEET_{name.upper()}")
        if raw is None:
            continue
        try:
            values[name] = json.loads(raw) if name in _JSON_FIELDS else raw
        except json.JSONDecodeError:
            raise InvalidInput(f"invalid configuration: FLEET_{name.upper()} is not valid"
                               " JSON") from None
    return values


def load_settings(**overrides: Any) -> Settings:
    """Read settings from ``FLEET_CONFIG`` and the environment (which wins); one-line
    error if invalid."""
    path = os.environ.get("FLEET_CONFIG", "")
    values = _file_values(path) if path else {}
    values.update(env_values(os.environ))
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        raise InvalidInput(f"invalid configuration {where}: {err['msg']}") from None


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"//([^/@]*):[^/@]*@", r"//\1:***@", url)
