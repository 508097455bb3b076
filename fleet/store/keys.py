"""Every Redis key fleet writes, in one place, all under one configurable prefix.

fleet never touches a key outside its prefix: users may share a Redis server, so
cleaning up means deleting ``<prefix>:*`` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names for one prefix."""

    prefix: str

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def pattern(self) -> str:
        """Matches every key of this prefix (for cleanup of a test or demo prefix)."""
        return f"{self.prefix}:*"

    @property
    def celery(self) -> str:
        """Prefix of the keys Celery's broker and result backend write for us."""
        return self._k("celery") + ":"

    hosts = property(lambda self: self._k("hosts"))
    vms = property(lambda self: self._k("vms"))
    usage = property(lambda self: self._k("usage"))
    """The capacity ledger: vCPUs and MiB of VM records per host (``store/ledger.py``)."""
    jobs = property(lambda self: self._k("jobs"))
    active_moves = property(lambda self: self._k("moves", "active"))
    audit = property(lambda self: self._k("events"))

    def host(self, name: str) -> str:
        return self._k("host", name)

    def drain(self, host: str) -> str:
        """The id of the host's latest drain job."""
        return self._k("host", host, "drain")

    def heartbeat(self, host: str) -> str:
        return self._k("hb", host)

    def vm(self, name: str) -> str:
        return self._k("vm", name)

    @property
    def vm_prefix(self) -> str:
        """What ``vm(name)`` puts before the name."""
        return self._k("vm") + ":"

    def vm_lock(self, name: str) -> str:
        """Holds the id of the move that owns a VM; SET NX makes one move per VM."""
        return self._k("vm", name, "move")

    vm_locks = property(lambda self: self._k("locks"))
    """Names of the VMs whose lock may be held (so a sweeper can find orphaned locks)."""

    def job(self, job_id: str) -> str:
        return self._k("job", job_id)

    def job_events(self, job_id: str) -> str:
        return self._k("job", job_id, "events")

    def job_waiting(self, job_id: str) -> str:
        """The job's moves waiting for a destination (sorted set by plan order)."""
        return self._k("job", job_id, "waiting")

    def job_flying(self, job_id: str) -> str:
        """The job's moves placed and not finished (sorted set)."""
        return self._k("job", job_id, "flying")

    def job_asked(self, job_id: str) -> str:
        """Set while an advance of the job is wanted (``JobService.advance``)."""
        return self._k("job", job_id, "asked")

    def job_cancel(self, job_id: str) -> str:
        """Set once the job's cancel is asked for (with its record): runners poll it."""
        return self._k("job", job_id, "cancel")

    def job_sent(self, job_id: str) -> str:
        """Set (with a TTL) while an advance message of the job is on its way: a move's
        end that finds it set only asks (``job_asked``) instead of sending another."""
        return self._k("job", job_id, "sent")

    def job_indexed(self, job_id: str) -> str:
        """Set once the job's moves are in ``job_waiting``/``job_flying``."""
        return self._k("job", job_id, "indexed")

    def job_keys(self, job_id: str) -> list[str]:
        """Every key of a job but its moves' (for deleting it)."""
        return [self.job(job_id), self.job_events(job_id), self.job_waiting(job_id),
                self.job_flying(job_id), self.job_indexed(job_id), self.job_asked(job_id),
                self.job_sent(job_id), self.job_cancel(job_id)]

    def move(self, move_id: str) -> str:
        return self._k("move", move_id)

    def claims(self, host: str) -> str:
        """Capacity reserved on a destination by in-flight moves (hash move id -> json)."""
        return self._k("claims", host)

    def sim_host(self, host: str) -> str:
        """Domains of a simulated host (hash name -> json)."""
        return self._k("sim", host, "domains")

    def sim_job(self, host: str, name: str) -> str:
        """Statistics of a simulated migration in progress (expires if its runner dies)."""
        return self._k("sim", host, "job", name)

    def sim_abort(self, host: str, name: str) -> str:
        return self._k("sim", host, "abort", name)

    def sim_faults(self, host: str) -> str:
        """Faults armed for a simulated host's next migrations (hash fault -> count)."""
        return self._k("sim", host, "faults")

    changes = property(lambda self: self._k("placement", "changes"))
    """Stream of placement-relevant changes (VMs, host states, claims) for kept states."""
    failover_state = property(lambda self: self._k("failover", "state"))
    failover_events = property(lambda self: self._k("failover", "events"))
    monitor_lease = property(lambda self: self._k("failover", "lease"))
    """Names the leading monitor and its epoch ("<epoch> <holder>"); Redis expires it."""
    monitor_epoch = property(lambda self: self._k("failover", "epoch"))
    """The last leadership epoch handed out (INCR once per new term)."""
    vmguard_state = property(lambda self: self._k("failover", "vmguard"))

    fence_config = property(lambda self: self._k("failover", "fence-config"))
    """The fence agents the controller runs (kind per host, no secrets), as it published
    them, so every view shows the configuration that fences."""

    def failover_job(self, host: str) -> str:
        """The id of the failover job of a host that is being recovered."""
        return self._k("failover", "job", host)

    def sim_refusals(self, host: str) -> str:
        """Pre-flight reasons a simulated host gives (a test's knob)."""
        return self._k("sim", "refuse", host)

    def sim_power(self, host: str) -> str:
        """"off" while a simulated host has lost power."""
        return self._k("sim", host, "power")

    def counter(self, name: str) -> str:
        """A metrics counter: hash of json-encoded labels -> value."""
        return self._k("metrics", name)

    def lease(self, name: str) -> str:
        return self._k("lease", name)
