"""Pure translations of the libvirt adapter's migrations: flags, typed parameters, stats.

``migration_flags`` and ``migration_params`` build ``migrateToURI3``'s arguments from
fleet's ``MigrationParams``; ``job_stats_from`` reads ``virDomainGetJobStats``.
"""

from __future__ import annotations

from typing import Any

from fleet.core.hypervisor import JobStats, MigrationParams, PermanentError

MIB = 1024 * 1024


def migration_flags(lib: Any, params: MigrationParams) -> int:
    """Live, peer-to-peer, persistent on the destination, undefined on the source."""
    flags = int(lib.VIR_MIGRATE_LIVE | lib.VIR_MIGRATE_PEER2PEER
                | lib.VIR_MIGRATE_PERSIST_DEST | lib.VIR_MIGRATE_UNDEFINE_SOURCE)
    if params.auto_converge:
        flags |= int(lib.VIR_MIGRATE_AUTO_CONVERGE)
    if params.postcopy:
        flags |= int(lib.VIR_MIGRATE_POSTCOPY)
    return flags


_EXTRA_PARAMS = {  # MigrationParams.extra key -> libvirt typed parameter name attribute
    "auto_converge_initial": "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL",
    "auto_converge_increment": "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT",
    "bandwidth_postcopy_mib_s": "VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY",
}


def migration_params(lib: Any, params: MigrationParams) -> dict[str, int]:
    """Typed parameters of ``migrateToURI3``: bandwidth (MiB/s) and known extras."""
    values: dict[str, int] = {}
    if params.bandwidth_mib_s > 0:
        values[lib.VIR_MIGRATE_PARAM_BANDWIDTH] = max(1, round(params.bandwidth_mib_s))
    for key, attr in _EXTRA_PARAMS.items():
        if key in params.extra and hasattr(lib, attr):
            try:
                values[getattr(lib, attr)] = int(params.extra[key])
            except ValueError:
                raise PermanentError(f"migration parameter {key} must be an integer") from None
    return values


def job_stats_from(stats: dict[str, Any]) -> JobStats:
    """``JobStats`` from the dict of ``virDomainGetJobStats`` (bytes, pages, ms)."""
    page = int(stats.get("memory_page_size", 4096) or 4096)
    return JobStats(
        processed_mib=stats.get("data_processed", 0) / MIB,
        remaining_mib=stats.get("data_remaining", 0) / MIB,
        total_mib=stats.get("data_total", 0) / MIB,
        mib_s=stats.get("memory_bps", 0) / MIB,
        dirty_mib_s=stats.get("memory_dirty_rate", 0) * page / MIB,
        iteration=int(stats.get("memory_iteration", 0)),
        elapsed_s=stats.get("time_elapsed", 0) / 1000.0,
        expected_downtime_ms=float(stats.get("downtime", 0)),
    )
