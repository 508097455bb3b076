"""The placement change stream: every write that changes what placement sees.

VM records (full record, so applying a change twice is harmless), VMs removed, host
states, hosts added or changed, and capacity claims (keyed by move, also idempotent)
are appended in the same transaction as the write itself. A process that keeps a
placement state (the controller) follows the stream instead of rebuilding.
``cas_vm`` is the one VM-record write that does all: versioned compare-and-set, its
change record and its capacity ledger change (``store/ledger.py``), used by the store
and (under the monitor's lease) by failover.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from fleet.core.models import VM
from fleet.store import ledger
from fleet.store.keys import Keys
from fleet.store.records import Guard, cas

CHANGES_MAXLEN = 100_000

RELEASE = """
local claim = redis.call('HGET', KEYS[1], ARGV[1])
if not claim then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local data = '{"host":' .. cjson.encode(ARGV[2]) .. ',"move":' .. cjson.encode(ARGV[1]) ..
             ',"sign":-1,"claim":' .. claim .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'claim', 'data', data)
return 1
"""
"""Release a claim and record it in one atomic step (only if it existed)."""


def changed(pipe: Any, keys: Keys, kind: str, **data: Any) -> None:
    """Queue a change record on ``pipe`` (inside the caller's transaction)."""
    pipe.xadd(keys.changes, {"kind": kind, "data": json.dumps(data, separators=(",", ":"))},
              maxlen=CHANGES_MAXLEN, approximate=True)


def parse(fields: dict[str, str]) -> tuple[str, dict[str, Any]]:
    return fields["kind"], dict(json.loads(fields["data"]))


def cas_vm(client: Any, keys: Keys, name: str, mutate: Callable[[VM], VM | None],
           guard: Guard | None = None) -> VM | None:
    """Compare-and-set VM record ``name`` (None: absent, or ``mutate`` declined): every
    write raises the record's ``version`` and enters the change stream; ``guard`` as in
    ``cas``."""
    before: list[VM] = []

    def versioned(vm: VM) -> VM | None:
        before[:] = [copy.copy(vm)]  # ``mutate`` may change ``vm`` in place
        new = mutate(vm)
        if new is not None:
            new.version = before[0].version + 1
        return new

    def extra(pipe: Any, vm: VM) -> None:
        ledger.delta(pipe, keys.usage, before[0], vm)
        changed(pipe, keys, "vm", record=vm.to_dict())

    return cas(client, keys.vm(name), VM, versioned, guard=guard, extra=extra)
