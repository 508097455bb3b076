"""Inside one host: which NUMA cells and which devices a guest takes.

Pure functions over a host's per-cell free vCPU (milli) and memory (MiB) lists and its
per-device free list (milli-devices, ``WHOLE`` = one free device). The engine
(``fleet.core.fleetstate``) asks ``cells_fit``/``devices_fit`` in its filters and
``choose_cells``/``choose_devices`` when it records a VM, and remembers the answer (a
``Slot``) so that lifting the VM gives back exactly what it took.

- A guest pinned to ``n`` cells takes an even share of its vCPUs and memory on each of
  ``n`` distinct cells (``parts``; the first cells take the remainder). Every chosen cell
  must hold the larger share. Cells are chosen tightest first (least normalised room left,
  then lowest index), which keeps roomy cells for large guests.
- A device share below ``WHOLE`` (a vGPU) goes on one device, the tightest that holds it;
  a request of ``k`` whole devices takes the first ``k`` devices that are wholly free.
- A VM that already runs on a host where it does not fit (an inventory, a claim being
  released out of order) is still recorded: it takes the roomiest cells and devices and
  their free values go negative, so nothing else is placed there.
"""

from __future__ import annotations

from typing import NamedTuple

WHOLE = 1000


class Slot(NamedTuple):
    """The cells and devices one guest occupies on its host (indexes)."""

    cells: tuple[int, ...] = ()
    devices: tuple[int, ...] = ()


EMPTY = Slot()


def parts(total: int, n: int) -> list[int]:
    """``total`` split evenly into ``n`` parts, the first ones taking the remainder."""
    q, r = divmod(total, n)
    return [q + (k < r) for k in range(n)]


def _ceil(total: int, n: int) -> int:
    return -(-total // n)


def cells_fit(cpu: list[int], mem: list[int], c: int, m: int, n: int) -> bool:
    """True when ``n`` distinct cells each hold an ``n``-th of ``c`` milli-vCPU, ``m`` MiB."""
    if n > len(cpu):
        return False
    pc, pm = _ceil(c, n), _ceil(m, n)
    count = 0
    for k in range(len(cpu)):
        if cpu[k] >= pc and mem[k] >= pm:
            count += 1
            if count >= n:
                return True
    return False


def choose_cells(cpu: list[int], mem: list[int], cap: tuple[list[int], list[int]],
                 c: int, m: int, n: int) -> tuple[int, ...]:
    """The cells a guest of ``c``/``m`` pinned to ``n`` cells takes, in index order."""
    n = min(n, len(cpu))
    pc, pm = _ceil(c, n), _ceil(m, n)
    cap_cpu, cap_mem = cap

    def left(k: int) -> float:
        return (cpu[k] - pc) / max(1, cap_cpu[k]) + (mem[k] - pm) / max(1, cap_mem[k])

    fitting = [k for k in range(len(cpu)) if cpu[k] >= pc and mem[k] >= pm]
    if len(fitting) >= n:
        chosen = sorted(fitting, key=lambda k: (left(k), k))[:n]
    else:
        chosen = sorted(range(len(cpu)), key=lambda k: (-left(k), k))[:n]
    return tuple(sorted(chosen))


def whole(g: int) -> int:
    """Whole devices a request of ``g`` milli-devices takes (0 for a share of one)."""
    return 0 if g < WHOLE else _ceil(g, WHOLE)


def per_device(g: int) -> int:
    """What a request of ``g`` milli-devices takes from each device it is given."""
    return g if g < WHOLE else WHOLE


def devices_fit(free: list[int], g: int) -> bool:
    """True when the devices with ``free`` milli each can serve a request of ``g``."""
    if g <= 0:
        return True
    if g < WHOLE:
        return max(free, default=0) >= g
    return free.count(WHOLE) >= whole(g)


def unserved(frees: list[list[int]], g: int) -> list[int]:
    """Indexes of the hosts (``frees``: each host's devices) that cannot serve ``g``."""
    if g < WHOLE:
        return [i for i, free in enumerate(frees) if max(free, default=0) < g]
    k = whole(g)
    return [i for i, free in enumerate(frees) if free.count(WHOLE) < k]


def choose_devices(free: list[int], g: int) -> tuple[int, ...]:
    """The devices a request of ``g`` milli-devices takes, in index order."""
    k = min(max(1, whole(g)), len(free))
    need = per_device(g)
    fitting = [d for d in range(len(free)) if free[d] >= need]
    if len(fitting) >= k:
        chosen = fitting[:k] if g >= WHOLE else [min(fitting, key=lambda d: (free[d], d))]
    else:
        chosen = sorted(range(len(free)), key=lambda d: (-free[d], d))[:k]
    return tuple(sorted(chosen))


# Levels: the engine's index keeps hosts apart by what their devices and NUMA cells can
# still serve, so a GPU or pinned request skips hosts that cannot serve it unvisited.
# Device level 0: no device with room; 1-4: the freest device has a quarter, half, three
# quarters or almost all of itself free; 5-12: 1-8 (or more) wholly free devices.
# NUMA level of a host with cells: the bit length of its largest cell's free whole vCPUs
# (0: less than one, 1: one, 2: 2-3, 3: 4-7, ...); hosts without cells take the top level.
LEVELS_SHARE, LEVELS_MAX = 4, 12


def numa_levels(cells_vcpus: list[int]) -> int:
    """How many NUMA levels a fleet whose largest cell has ``max(cells_vcpus)`` milli
    needs (1 when no host has cells)."""
    top = max(cells_vcpus, default=0)
    return 1 if top <= 0 else (top // WHOLE).bit_length() + 2


def numa_level(cpu: list[int], count: int) -> int:
    """The NUMA level of a host whose cells have ``cpu`` milli free (``count`` levels)."""
    if not cpu:
        return count - 1
    return min(count - 2, (max(0, *cpu) // WHOLE).bit_length())


def numa_min_level(part: int, count: int) -> int:
    """The lowest NUMA level whose hosts may hold ``part`` milli-vCPU on one cell."""
    return 0 if count == 1 else min(count - 2, (part // WHOLE).bit_length())


def level(free: list[int]) -> int:
    """The device level of a host whose devices have ``free`` milli each."""
    if not free:
        return 0
    whole_free = free.count(WHOLE)
    if whole_free:
        return LEVELS_SHARE + min(whole_free, LEVELS_MAX - LEVELS_SHARE)
    top = max(free)
    return 0 if top <= 0 else 1 + min(LEVELS_SHARE - 1, top * LEVELS_SHARE // WHOLE)


def level_may_fit(lv: int, g: int) -> bool:
    """False when no host of device level ``lv`` can serve ``g`` milli-devices."""
    if g <= 0:
        return True
    if g < WHOLE:
        return lv > LEVELS_SHARE or lv * WHOLE > g * LEVELS_SHARE
    return lv >= LEVELS_SHARE + min(whole(g), LEVELS_MAX - LEVELS_SHARE)
