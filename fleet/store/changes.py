"""The placement change stream: every write that changes what placement sees.

VM records (full record, so applying a change twice is harmless), VMs removed, host
states, hosts added or changed, and capacity claims (keyed by move, also idempotent)
are appended in the same transaction as the write itself. A process that keeps a
placement state (the controller) follows the stream instead of rebuilding.
"""

from __future__ import annotations

import json
from typing import Any

from fleet.store.keys import Keys

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
