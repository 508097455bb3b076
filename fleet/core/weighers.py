"""Weighers: how much placement likes a host that passed every filter.

Each weigher returns a value normalised to [0, 1]; the host's score is the sum of the
values times their multipliers (``PlacementConfig.weights``). Positive multipliers on the
free-resource weighers spread VMs out, negative ones stack them.

- ``cpu``, ``ram``, ``disk``: free capacity before placement divided by the largest
  capacity in the fleet (a fixed scale, so scores are comparable across queries and can
  be indexed). They are *linear*: the engine keeps hosts sorted by their sum.
- ``balance``: 1 - |free vCPU share - free memory share| after placement, favouring hosts
  whose remaining resources stay in proportion (the dot-product idea, it reduces
  fragmentation). It depends on the VM, so the engine bounds it by its multiplier.
- ``gpu``: on a host with devices, 1 - |free vCPU share - free device share|, both
  shares of that host's own capacity: hosts whose vCPUs and GPUs stay in proportion are
  preferred, so a host keeps vCPUs for its free GPUs (a GPU whose host has no vCPU left
  is stranded). 0 on hosts without devices. It does not depend on the VM, so the engine
  indexes it with the linear weighers; in a fleet without devices it is not computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleet.core.errors import InvalidInput

WEIGHERS = frozenset({"cpu", "ram", "disk", "balance", "gpu"})


@dataclass(frozen=True)
class Weights:
    """Parsed multipliers, one per weigher."""

    cpu: float = 0.0
    ram: float = 0.0
    disk: float = 0.0
    balance: float = 0.0
    gpu: float = 0.0

    @property
    def dynamic_max(self) -> float:
        """Largest contribution the VM-dependent weighers can add."""
        return max(self.balance, 0.0)


def parse_weights(weights: Mapping[str, float]) -> Weights:
    """Validated ``Weights`` from a name → multiplier mapping."""
    unknown = sorted(set(weights) - WEIGHERS)
    if unknown:
        raise InvalidInput(f"unknown weigher {unknown[0]!r} (known: {', '.join(sorted(WEIGHERS))})")
    return Weights(**{k: float(v) for k, v in weights.items()})


def share(free: int, scale: int) -> float:
    """``free`` as a share of ``scale``, clamped to [0, 1]."""
    if free <= 0:
        return 0.0
    return 1.0 if free >= scale else free / scale


def linear_score(w: Weights, cpu: float, ram: float, disk: float) -> float:
    """Score of the linear weighers for normalised free shares ``cpu``, ``ram``, ``disk``."""
    return w.cpu * cpu + w.ram * ram + w.disk * disk


def balance(cpu_after: float, ram_after: float) -> float:
    """1 when free vCPU and memory shares are equal after placement, 0 when opposite."""
    return 1.0 - abs(cpu_after - ram_after)


def edge_bound(multiplier: float, low: float, high: float) -> float:
    """Largest value ``multiplier x x`` takes for x in [low, high]."""
    return multiplier * (high if multiplier > 0 else low)
