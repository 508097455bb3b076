"""The KVM lab: N real libvirt "hosts" on one Linux machine, for e2e tests and demos.

Each host is a network namespace (veth on the bridge ``fleetbr0``, its own address) plus
mount and UTS namespaces held open by a ``sleep infinity`` holder, with private libvirt
directories and its own virtlogd and TCP-listening libvirtd. A Redis on the bridge
serves the fleet agents running inside the hosts. Modules, by concept:

- ``config``: names, addresses and paths of a lab;
- ``state``: the JSON state file (pids) and its lock;
- ``procs``: running, spawning, probing and killing processes;
- ``deps``: the Debian packages and libvirt-python the lab needs;
- ``network``: bridge, namespaces, veths (and isolate/heal);
- ``hosts``: one host's namespaces, libvirt configuration and daemons;
- ``reaper``: the subreaper libvirtd runs under (prompt reaping of exited QEMUs);
- ``services``: the bridge Redis, fleet agents and controller;
- ``guests``: the busybox initramfs and VMs created in the lab;
- ``lab``: the whole lab: up, down, status, kill, isolate, heal.
"""
