"""The libvirt adapter: ``fleet.core.hypervisor.Hypervisor`` over a real libvirtd.

libvirt is translated at this boundary: ``libvirtError`` codes become ``TransientError``,
``PermanentError``, ``DomainGone`` or ``DestinationError``; domain states become
``DomainState``; job statistics become ``JobStats``. Nothing above sees a libvirt type.

``import libvirt`` happens here only, and lazily: the error classification below is
usable (and unit-tested) without libvirt-python; guest XML is built in ``domain_xml``.
The connection is opened in the process that uses it, on first use, with libvirt's
default event loop running in a daemon thread so keepalive (5 s x 3) detects a dead peer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fleet.core.definition_rules import DEFAULT_ROOTS, definition_problems
from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import (
    DestinationError,
    DomainGone,
    DomainInfo,
    DomainSpec,
    DomainState,
    HypervisorError,
    JobStats,
    MigrationParams,
    MigrationTarget,
    PermanentError,
    TransientError,
)
from fleet.core.libvirt_uri import check_libvirt_uri
from fleet.core.nodefacts import NodeFacts
from workers.hypervisors import libvirt_node
from workers.hypervisors.libvirt_migration import (
    job_stats_from,
    migration_flags,
    migration_params,
)

T = TypeVar("T")
MIB = 1024 * 1024

# virErrorNumber values (stable ABI of libvirt's virterror.h).
ERR_INTERNAL_ERROR = 1
ERR_NO_SUPPORT = 3
ERR_NO_CONNECT = 5
ERR_INVALID_CONN = 6
ERR_INVALID_ARG = 8
ERR_OPERATION_FAILED = 9
ERR_XML_ERROR = 27
ERR_DOM_EXIST = 28
ERR_OPERATION_DENIED = 29
ERR_XML_DETAIL = 35
ERR_SYSTEM_ERROR = 38
ERR_RPC = 39
ERR_NO_DOMAIN = 42
ERR_AUTH_FAILED = 45
ERR_OPERATION_INVALID = 55
ERR_CONFIG_UNSUPPORTED = 67
ERR_OPERATION_TIMEOUT = 68
ERR_ARGUMENT_UNSUPPORTED = 74
ERR_OPERATION_ABORTED = 78
ERR_MIGRATE_UNSAFE = 81
ERR_OPERATION_UNSUPPORTED = 84
ERR_AGENT_UNRESPONSIVE = 86
ERR_RESOURCE_BUSY = 87
ERR_ACCESS_DENIED = 88
ERR_CPU_INCOMPATIBLE = 91
ERR_NO_SERVER = 95
ERR_NO_CLIENT = 96

TRANSIENT_CODES = frozenset({
    ERR_NO_CONNECT, ERR_INVALID_CONN, ERR_SYSTEM_ERROR, ERR_RPC, ERR_OPERATION_TIMEOUT,
    ERR_AGENT_UNRESPONSIVE, ERR_RESOURCE_BUSY, ERR_NO_SERVER, ERR_NO_CLIENT,
    ERR_OPERATION_FAILED,
})
# Errors of a lost or refused connection: during a peer-to-peer migration, while our own
# connection to the source still answers, they come from the destination.
CONNECTION_CODES = frozenset({ERR_NO_CONNECT, ERR_INVALID_CONN, ERR_SYSTEM_ERROR, ERR_RPC,
                              ERR_OPERATION_TIMEOUT, ERR_AUTH_FAILED})
CONNECTION_WORDS = ("client socket is closed", "connection", "keepalive", "unable to connect",
                    "cannot recv data", "cannot write data", "end of file")

# virDomainState values, and the running reason of a copy resumed by a failed migration.
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_RUNNING_MIGRATION_CANCELED = 6

_STATES = {0: DomainState.OTHER, 1: DomainState.RUNNING, 2: DomainState.RUNNING,
           3: DomainState.PAUSED, 4: DomainState.OTHER, 5: DomainState.SHUTOFF,
           6: DomainState.CRASHED, 7: DomainState.PAUSED}


def domain_state(code: int) -> DomainState:
    """fleet's word for a ``virDomainState`` number."""
    return _STATES.get(code, DomainState.OTHER)


def migration_cancelled(state: int, reason: int) -> bool:
    """Whether a domain runs again because libvirt cancelled its outgoing migration."""
    return state == VIR_DOMAIN_RUNNING and reason == VIR_DOMAIN_RUNNING_MIGRATION_CANCELED


def _is_connection_error(code: int, message: str) -> bool:
    lowered = message.lower()
    return code in CONNECTION_CODES or (
        code == ERR_INTERNAL_ERROR and any(w in lowered for w in CONNECTION_WORDS))


def classify(code: int, message: str, *, migrating: bool = False,
             local_alive: bool = True) -> type[HypervisorError]:
    """The fleet exception class for a libvirt error code (pure; see ``translate``).

    ``migrating``: the error ended a peer-to-peer migration; ``local_alive``: our own
    connection to the source libvirtd still answers afterwards.
    """
    if code == ERR_NO_DOMAIN:
        return DomainGone
    if migrating and (code == ERR_DOM_EXIST or (
            local_alive and _is_connection_error(code, message))):
        return DestinationError
    if code in TRANSIENT_CODES or _is_connection_error(code, message):
        return TransientError
    return PermanentError


def translate(err: Any, what: str, *, migrating: bool = False,
              local_alive: bool = True) -> HypervisorError:
    """A fleet exception for a ``libvirtError`` (or anything with its three getters)."""
    code = int(err.get_error_code() or 0)
    message = str(err.get_error_message() or err)
    cls = classify(code, message, migrating=migrating, local_alive=local_alive)
    return cls(f"{what}: {message} (libvirt error {code})")


# -- the libvirt module and its event loop ------------------------------------------
_loop_lock = threading.Lock()
_loop_pid = 0


def _libvirt() -> Any:
    import libvirt

    return libvirt


def _ignore_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler is registered."""


def _run_event_loop(lib: Any) -> None:
    while True:
        lib.virEventRunDefaultImpl()


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once per pid)."""
    global _loop_pid  # noqa: PLW0603 - one loop per process, by design
    with _loop_lock:
        if _loop_pid == os.getpid():
            return
        lib = _libvirt()
        lib.registerErrorHandler(_ignore_error, None)  # errors are raised, not printed
        lib.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, args=(lib,), name="libvirt-events",
                         daemon=True).start()
        _loop_pid = os.getpid()


def _is_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:  # a dead or closed connection
        return False


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a dead connection may fail; nothing to release
        return


class LibvirtHypervisor:
    """One host's libvirtd, reached through ``uri`` (``qemu:///system`` on the host)."""

    def __init__(self, host: str, uri: str = "qemu:///system",
                 keepalive: tuple[int, int] = (5, 3), allow_tcp: bool = False,
                 roots: Sequence[str] = DEFAULT_ROOTS) -> None:
        self.host = host
        self.roots = tuple(roots)  # where definitions' host paths may lie
        self.uri = uri
        self.keepalive = keepalive
        self.allow_tcp = allow_tcp  # qemu+tcp peers (fleet.core.libvirt_uri)
        self._conn: Any = None
        self._conn_pid = 0
        self._lock = threading.Lock()
        self._wake: Callable[[str], None] | None = None
        self.local = uri.startswith("qemu:///")  # this process runs on the host

    # -- connection ------------------------------------------------------------------
    def _connection(self) -> Any:
        with self._lock:
            conn = self._conn
            if conn is not None and self._conn_pid == os.getpid() and _is_alive(conn):
                return conn
            conn = self._open()
            if self._wake is not None:
                lib = _libvirt()
                try:
                    libvirt_node.watch_lifecycle(conn, self._wake)
                except lib.libvirtError as exc:
                    raise translate(exc, f"connect {self.uri}") from None
            self._conn, self._conn_pid = conn, os.getpid()
            return conn

    def _safe(self, uri: str) -> str:
        """``uri`` if fleet may open it; a URI from the store could make libvirt run a
        command (``PermanentError``, nothing opened)."""
        try:
            return check_libvirt_uri(uri, self.allow_tcp)
        except InvalidInput as exc:
            raise PermanentError(str(exc)) from None

    def _open(self) -> Any:
        """A new connection with keepalive (the event loop runs in this process)."""
        self._safe(self.uri)
        ensure_event_loop()
        lib = _libvirt()
        try:
            conn = lib.open(self.uri)
            conn.setKeepAlive(*self.keepalive)
        except lib.libvirtError as exc:
            raise translate(exc, f"connect {self.uri}") from None
        return conn

    def _call(self, what: str, fn: Callable[[Any], T], **kw: bool) -> T:
        """Run ``fn(conn)``, translating libvirt errors."""
        conn = self._connection()
        lib = _libvirt()
        try:
            return fn(conn)
        except lib.libvirtError as exc:
            raise translate(exc, what, **kw) from None

    def _domain(self, conn: Any, name: str) -> Any:
        return conn.lookupByName(name)

    # -- inventory ---------------------------------------------------------------
    def _info(self, dom: Any) -> DomainInfo:
        state, reason = dom.state()
        _state, max_kib, _mem, vcpus, _cpu = dom.info()
        return DomainInfo(name=dom.name(), uuid=dom.UUIDString(), state=domain_state(state),
                          vcpus=int(vcpus), memory_mib=int(max_kib) // 1024,
                          migrating=self._has_job(dom),
                          cancelled=migration_cancelled(int(state), int(reason)))

    def _has_job(self, dom: Any) -> bool:
        """An outgoing migration job, or an incoming one (whose statistics libvirt only
        gives on the source: asking here fails with ``VIR_ERR_OPERATION_UNSUPPORTED``)."""
        lib = _libvirt()
        try:
            return int(dom.jobInfo()[0]) != int(lib.VIR_DOMAIN_JOB_NONE)
        except lib.libvirtError as exc:
            return bool(exc.get_error_code() == ERR_OPERATION_UNSUPPORTED)

    def list_domains(self) -> list[DomainInfo]:
        def run(conn: Any) -> list[DomainInfo]:
            infos = []
            for dom in conn.listAllDomains(0):
                try:
                    infos.append(self._info(dom))
                except _libvirt().libvirtError as exc:  # vanished while listing
                    if exc.get_error_code() != ERR_NO_DOMAIN:
                        raise
            return infos

        return self._call(f"list domains on {self.host}", run)

    def lookup(self, name: str) -> DomainInfo:
        return self._call(f"lookup {name} on {self.host}",
                          lambda c: self._info(self._domain(c, name)))

    def start(self, spec: DomainSpec) -> DomainInfo:
        return self._define(spec, start=True)

    def define(self, spec: DomainSpec) -> DomainInfo:
        return self._define(spec, start=False)

    def _define(self, spec: DomainSpec, start: bool) -> DomainInfo:
        if not spec.definition:
            raise PermanentError(f"domain {spec.name} has no definition")
        problems = definition_problems(spec.definition, self.roots)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PermanentError(f"refused to define {spec.name} on {self.host}:"
                                 f" {problems[0]}{more}")

        def run(conn: Any) -> DomainInfo:
            dom = conn.defineXML(spec.definition)
            if start and not dom.isActive():
                dom.create()
            return self._info(dom)

        what = "start" if start else "define"
        return self._call(f"{what} {spec.name} on {self.host}", run)

    def destroy(self, name: str) -> None:
        def run(conn: Any) -> None:
            dom = self._domain(conn, name)
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()

        try:
            self._call(f"destroy {name} on {self.host}", run)
        except DomainGone:
            return

    def shutdown(self, name: str, timeout_s: float) -> None:
        def run(conn: Any) -> None:
            dom = self._domain(conn, name)
            deadline = time.monotonic() + timeout_s
            if dom.isActive() and timeout_s > 0:
                dom.shutdown()  # ACPI: the guest decides; OS-less guests ignore it
            while dom.isActive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if dom.isActive():
                dom.destroy()

        self._call(f"shut down {name} on {self.host}", run)

    def pause(self, name: str) -> None:
        self._call(f"pause {name} on {self.host}", lambda c: self._domain(c, name).suspend())

    def resume(self, name: str) -> None:
        self._call(f"resume {name} on {self.host}", lambda c: self._domain(c, name).resume())

    def healthy(self) -> bool:
        try:
            return bool(self._call(f"ping {self.host}", lambda c: c.getLibVersion() > 0))
        except HypervisorError:
            return False

    # -- facts -------------------------------------------------------------------
    def node_facts(self) -> NodeFacts | None:
        return self._call(f"facts of {self.host}",
                          lambda c: libvirt_node.node_facts(c, self.local))

    def definition(self, name: str) -> str:
        return self._call(f"definition of {name} on {self.host}",
                          lambda c: libvirt_node.definition(self._domain(c, name)))

    def preflight(self, needs: Sequence[str], definition: str,
                  reported: dict[str, Any]) -> list[str]:
        return self._call(f"pre-flight on {self.host}", lambda c: libvirt_node.preflight(
            c, needs, definition, reported, self.local))

    def watch(self, wake: Callable[[str], None]) -> None:
        self._wake = wake
        self.close()  # the next connection registers ``wake`` (as every reconnect does)
        self._connection()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    # -- migration ---------------------------------------------------------------
    def migrate(self, name: str, target: MigrationTarget, params: MigrationParams) -> None:
        if not target.uri:
            raise PermanentError(f"no libvirt URI for destination {target.host}")
        self._safe(target.uri)  # this host's libvirtd opens it, as root
        lib = _libvirt()
        flags, values = migration_flags(lib, params), migration_params(lib, params)
        # its own connection: calls on the shared one (another guest's lookup, this
        # guest's job statistics) waited up to 0.4 s behind a migration's start on it
        conn = self._open()
        try:
            dom = self._domain(conn, name)
            if params.max_downtime_ms > 0:
                self._try_downtime(dom, params.max_downtime_ms)
            dom.migrateToURI3(target.uri, values, flags)
        except lib.libvirtError as exc:
            raise translate(exc, f"migrate {name} {self.host} -> {target.host}",
                            migrating=True, local_alive=_is_alive(conn)) from None
        finally:
            _close_quietly(conn)

    @staticmethod
    def _try_downtime(dom: Any, downtime_ms: int) -> None:
        """Set the downtime target before the job starts; older QEMUs want a job first."""
        try:
            dom.migrateSetMaxDowntime(downtime_ms, 0)
        except _libvirt().libvirtError:
            return

    def job_stats(self, name: str) -> JobStats | None:
        lib = _libvirt()
        conn = self._connection()
        try:
            stats = self._domain(conn, name).jobStats(0)
        except lib.libvirtError as exc:
            if exc.get_error_code() in (ERR_OPERATION_INVALID, ERR_NO_DOMAIN):
                return None  # the job (and with it the domain) just ended
            raise translate(exc, f"job stats of {name} on {self.host}") from None
        if int(stats.get("type", 0)) in (lib.VIR_DOMAIN_JOB_NONE, lib.VIR_DOMAIN_JOB_COMPLETED):
            return None
        return job_stats_from(stats)

    def abort_job(self, name: str) -> None:
        lib = _libvirt()
        conn = self._connection()
        try:
            self._domain(conn, name).abortJob()
        except lib.libvirtError as exc:
            if exc.get_error_code() == ERR_OPERATION_INVALID:
                return  # no job to abort
            raise translate(exc, f"abort job of {name} on {self.host}") from None

    def start_postcopy(self, name: str) -> None:
        self._call(f"post-copy of {name} on {self.host}",
                   lambda c: self._domain(c, name).migrateStartPostCopy(0))

    def set_max_downtime(self, name: str, downtime_ms: int) -> None:
        self._call(f"max downtime of {name} on {self.host}",
                   lambda c: self._domain(c, name).migrateSetMaxDowntime(downtime_ms, 0))
