"""The capacity ledger: per host, the vCPUs and MiB its VM records use, kept in Redis.

Every write of a VM record changes the ledger in the same atomic step (the transaction
or script that writes the record), so a reservation reads one hash field pair instead of
every VM record: its cost does not grow with the fleet. The hash holds ``<host>:mcpu``
(milli-vCPUs, so fractional vCPUs add up exactly) and ``<host>:mem`` counters and a
``built`` marker; without the marker (a store written before the ledger existed, or
purged) the ledger is rebuilt from the records in one script, and reservations wait
for that.
"""

from __future__ import annotations

import math
from typing import Any

from fleet.core.models import VM

BUILT = "built"
NOT_BUILT = -1
"""What ``RESERVE`` returns when the ledger has no ``built`` marker yet."""


def cpu_field(host: str) -> str:
    return f"{host}:mcpu"


def milli(vcpus: float) -> int:
    return round(vcpus * 1000)


def mem_field(host: str) -> str:
    return f"{host}:mem"


def delta(pipe: Any, key: str, old: VM | None, new: VM | None) -> None:
    """Queue on ``pipe`` the ledger change of a VM record going from ``old`` to ``new``
    (either may be None: created, deleted); nothing when host and size stay."""
    if old is not None and new is not None and (old.host, old.vcpus, old.memory_mib) == (
            new.host, new.vcpus, new.memory_mib):
        return
    for vm, sign in ((old, -1), (new, 1)):
        if vm is not None and vm.host:
            pipe.hincrby(key, cpu_field(vm.host), sign * milli(vm.vcpus))
            pipe.hincrby(key, mem_field(vm.host), sign * vm.memory_mib)


def used(raw: dict[str, str]) -> dict[str, tuple[int, int]]:
    """The ledger hash as (vCPUs, MiB) per host; fractional vCPUs are rounded up."""
    parts: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        host, _, what = name.rpartition(":")
        if host:
            parts.setdefault(host, {})[what] = int(value)
    return {host: (math.ceil(p.get("mcpu", 0) / 1000), p.get("mem", 0))
            for host, p in parts.items()}


_MILLI = """
local function milli(vcpus) return math.floor(vcpus * 1000 + 0.5) end
"""

_ADJUST = _MILLI + """
local function adjust(ledger, raw, sign)
  if not raw then return end
  local vm = cjson.decode(raw)
  if vm.host and vm.host ~= '' then
    redis.call('HINCRBY', ledger, vm.host .. ':mcpu', sign * milli(vm.vcpus))
    redis.call('HINCRBY', ledger, vm.host .. ':mem', sign * vm.memory_mib)
  end
end
"""

PUT_VM = _ADJUST + """
-- KEYS: vm record, vm names, ledger, changes; ARGV: name, record, change data, maxlen
adjust(KEYS[3], redis.call('GET', KEYS[1]), -1)
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
adjust(KEYS[3], ARGV[2], 1)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'vm', 'data', ARGV[3])
return 1
"""
"""Write a VM record unconditionally, with its ledger change and change record."""

DELETE_VM = _ADJUST + """
-- KEYS: vm record, vm names, ledger, changes; ARGV: name, change data, maxlen
adjust(KEYS[3], redis.call('GET', KEYS[1]), -1)
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'vm_gone', 'data', ARGV[2])
return 1
"""
"""Delete a VM record unconditionally, with its ledger change and change record."""

REBUILD = _ADJUST + """
-- KEYS: vm names, ledger; ARGV: the prefix of VM record keys ("<prefix>:vm:")
redis.call('DEL', KEYS[2])
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  adjust(KEYS[2], redis.call('GET', ARGV[1] .. name), 1)
end
redis.call('HSET', KEYS[2], 'built', 1)
return 1
"""
"""Recount the ledger from every VM record, atomically."""

RESERVE = _MILLI + """
-- KEYS: claims of the host, ledger, changes
-- ARGV: move, vcpus, memory_mib, cpu limit, memory limit, host, maxlen
if redis.call('HEXISTS', KEYS[2], 'built') == 0 then return -1 end
local mcpu = milli(tonumber(ARGV[2]))
local cpu = mcpu + tonumber(redis.call('HGET', KEYS[2], ARGV[6] .. ':mcpu') or '0')
local ram = tonumber(ARGV[3]) + tonumber(redis.call('HGET', KEYS[2], ARGV[6] .. ':mem') or '0')
local claims = redis.call('HGETALL', KEYS[1])
for i = 1, #claims, 2 do
  if claims[i] ~= ARGV[1] then
    local c = cjson.decode(claims[i + 1])
    cpu = cpu + milli(c.vcpus)
    ram = ram + c.memory_mib
  end
end
if cpu > milli(tonumber(ARGV[4])) or ram > tonumber(ARGV[5]) then
  return 0
end
local claim = '{"vcpus":' .. ARGV[2] .. ',"memory_mib":' .. ARGV[3] .. '}'
redis.call('HSET', KEYS[1], ARGV[1], claim)
local data = '{"host":' .. cjson.encode(ARGV[6]) .. ',"move":' .. cjson.encode(ARGV[1]) ..
             ',"sign":1,"claim":' .. claim .. '}'
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'kind', 'claim', 'data', data)
return 1
"""
"""Reserve a move's capacity on a host unless its VMs plus claims would pass the limit:
1 reserved, 0 refused, -1 the ledger is not built."""
