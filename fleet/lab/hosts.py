"""One lab host: private libvirt directories, its namespaces and its daemons.

A host's network namespace comes from ``network``; here a ``sleep infinity`` holder is
started in it inside fresh mount and UTS namespaces, where the host's directories are
bind-mounted over /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt
and /etc/libvirt and the hostname is set. virtlogd and ``libvirtd -l`` then join the
holder's namespaces (``nsenter -t HOLDER -m -n -u``) and listen on the host's address.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

from fleet.lab.config import LIBVIRTD_PORT, LabConfig
from fleet.lab.procs import LabError, alive, kill, run, spawn, wait_until
from fleet.lab.state import HostPids
from workers.procfs import netns_processes
from workers.witness import answers

MOUNTS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
          "cache": "/var/cache/libvirt", "etc": "/etc/libvirt"}
LAB_UUID_NS = uuid.UUID("5f1d2c43-8a8e-4f55-9d0a-4c1ab0f1ee70")
START_TIMEOUT_S = 30.0
REAPER = Path(__file__).with_name("reaper.py")

_HOLDER = """set -e
D="$1"; H="$2"; shift 2
while [ $# -gt 0 ]; do mount --bind "$D/$1" "$2"; shift 2; done
hostname "$H"
touch "$D/holder.ready"
exec sleep infinity
"""


def host_uuid(cfg: LabConfig, host: str) -> str:
    """A distinct, stable SMBIOS-like host UUID (libvirt refuses to migrate to 'itself')."""
    return str(uuid.uuid5(LAB_UUID_NS, f"{cfg.root}/{host}"))


def libvirtd_conf(cfg: LabConfig, host: str) -> str:
    return "\n".join([
        "listen_tls = 0", "listen_tcp = 1", 'auth_tcp = "none"',
        f'listen_addr = "{cfg.address(host)}"', f'tcp_port = "{LIBVIRTD_PORT}"',
        f'host_uuid = "{host_uuid(cfg, host)}"',
        'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
        "keepalive_interval = 5", "keepalive_count = 5", "",
    ])


def qemu_conf(cfg: LabConfig, host: str) -> str:
    return "\n".join([
        'user = "root"', 'group = "root"', 'security_driver = "none"',
        "dynamic_ownership = 0", "remember_owner = 0",
        f'migration_host = "{cfg.address(host)}"', f'migration_address = "{cfg.address(host)}"',
        "cgroup_controllers = [ ]", "namespaces = [ ]", 'stdio_handler = "logd"', "",
    ])


def prepare_dirs(cfg: LabConfig, host: str) -> Path:
    """The host's private directories and libvirt configuration (rewritten each time)."""
    base = cfg.host_dir(host)
    for name, target in MOUNTS.items():
        (base / name).mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)
    etc = base / "etc"
    for item in Path("/etc/libvirt").glob("*.conf"):
        if not (etc / item.name).exists() and item.name not in ("libvirtd.conf", "qemu.conf"):
            shutil.copy2(item, etc / item.name)
    (etc / "qemu").mkdir(exist_ok=True)
    (etc / "libvirtd.conf").write_text(libvirtd_conf(cfg, host))
    (etc / "qemu.conf").write_text(qemu_conf(cfg, host))
    (base / "lib" / "qemu").mkdir(exist_ok=True)
    (base / "log" / "qemu").mkdir(exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    return base


def nsenter(holder: int) -> list[str]:
    """The prefix that runs a command inside a host (its mount, network and UTS ns)."""
    return ["nsenter", "-t", str(holder), "-m", "-n", "-u", "--"]


def start_holder(cfg: LabConfig, host: str) -> int:
    """The ``sleep infinity`` that keeps the host's namespaces, once its mounts are done."""
    base = cfg.host_dir(host)
    ready = base / "holder.ready"
    ready.unlink(missing_ok=True)
    pairs = [part for name, target in MOUNTS.items() for part in (name, target)]
    argv = ["ip", "netns", "exec", cfg.netns(host), "unshare", "--mount", "--uts",
            "--propagation", "private", "sh", "-c", _HOLDER, "holder", str(base), host, *pairs]
    pid = spawn(argv, cfg.log_dir / f"{host}-holder.log")
    wait_until(lambda: ready.exists() or not alive(pid), 10.0, f"{host} namespaces")
    if not alive(pid):
        raise LabError(f"{host}: namespace holder died; see {cfg.log_dir}/{host}-holder.log")
    return pid


def _start_daemon(cfg: LabConfig, host: str, holder: int, argv: list[str],
                  ready: Path | None = None) -> int:
    name = argv[0]
    pid = spawn([*nsenter(holder), *argv], cfg.log_dir / f"{host}-{name}.log")
    if ready is not None:
        wait_until(lambda: ready.exists() or not alive(pid), START_TIMEOUT_S, f"{host} {name}")
    if not alive(pid):
        raise LabError(f"{host}: {name} exited; see {cfg.log_dir}/{host}-{name}.log")
    return pid


def start_libvirtd(cfg: LabConfig, host: str, holder: int) -> int:
    """``libvirtd -l`` under a subreaper (see ``reaper``); the pid of libvirtd itself."""
    pidfile = cfg.host_dir(host) / "run" / "libvirtd.pid"
    pidfile.unlink(missing_ok=True)
    argv = [sys.executable, str(REAPER), "libvirtd", "-l", "-p", "/run/libvirt/libvirtd.pid"]
    reaper = spawn([*nsenter(holder), *argv], cfg.log_dir / f"{host}-libvirtd.log")
    wait_until(lambda: _read_pid(pidfile) > 0 or not alive(reaper), START_TIMEOUT_S,
               f"{host} libvirtd pid file")
    pid = _read_pid(pidfile)
    if not alive(pid):
        raise LabError(f"{host}: libvirtd exited; see {cfg.host_dir(host)}/log/libvirtd.log")
    return pid


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def libvirtd_listening(cfg: LabConfig, host: str) -> bool:
    return answers((cfg.address(host), LIBVIRTD_PORT), 0.5)


def ensure_host(cfg: LabConfig, host: str, pids: HostPids) -> HostPids:
    """Start what is not running of the host's holder, virtlogd and libvirtd."""
    prepare_dirs(cfg, host)
    if not alive(pids.holder):
        kill(netns_processes(cfg.netns(host)))  # leftovers of a killed host, if any
        pids = HostPids(holder=start_holder(cfg, host))
    run_dir = cfg.host_dir(host) / "run"
    if not alive(pids.virtlogd):
        (run_dir / "virtlogd-sock").unlink(missing_ok=True)
        argv = ["virtlogd", "-p", "/run/libvirt/virtlogd.pid"]
        pids.virtlogd = _start_daemon(cfg, host, pids.holder, argv, run_dir / "virtlogd-sock")
    if not alive(pids.libvirtd):
        pids.libvirtd = start_libvirtd(cfg, host, pids.holder)
    wait_until(lambda: libvirtd_listening(cfg, host) or not alive(pids.libvirtd),
               START_TIMEOUT_S, f"{host} libvirtd on {cfg.address(host)}:{LIBVIRTD_PORT}")
    if not alive(pids.libvirtd):
        raise LabError(f"{host}: libvirtd exited; see {cfg.host_dir(host)}/log/libvirtd.log")
    warm_up(cfg, host)
    ensure_guest_network(cfg, host, pids.holder)
    return pids


GUEST_NETWORK = "fleet-lan"
GUEST_BRIDGE = "flan0"
GUEST_NETWORK_XML = (f"<network><name>{GUEST_NETWORK}</name><forward mode='bridge'/>"
                     f"<bridge name='{GUEST_BRIDGE}'/></network>")


def ensure_guest_network(cfg: LabConfig, host: str, holder: int) -> None:
    """The bridge and the active libvirt network ``fleet-lan`` of a host (idempotent)."""
    if host in cfg.lan_missing_hosts():
        return
    run([*nsenter(holder), "sh", "-c", f"ip link show {GUEST_BRIDGE} >/dev/null 2>&1 || "
         f"ip link add {GUEST_BRIDGE} type bridge; ip link set {GUEST_BRIDGE} up"])
    virsh = ["virsh", "-q", "-c", cfg.uri(host)]
    info = run([*virsh, "net-info", GUEST_NETWORK], check=False)
    if not info:
        xml = cfg.host_dir(host) / f"{GUEST_NETWORK}.xml"
        xml.write_text(GUEST_NETWORK_XML)
        run([*virsh, "net-define", str(xml)])
        info = run([*virsh, "net-info", GUEST_NETWORK])
    if not any(line.split() == ["Active:", "yes"] for line in info.splitlines()):
        run([*virsh, "net-start", GUEST_NETWORK])


def warm_up(cfg: LabConfig, host: str) -> None:
    """Have libvirtd probe QEMU's capabilities now (~4 s, once per host) rather than
    on the first domain start or incoming migration."""
    run(["virsh", "-q", "-c", cfg.uri(host), "capabilities"], timeout=120)
