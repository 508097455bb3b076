"""The witness probe: targets from migration URIs, real loopback probes, one at a time."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fleet.core.models import Host
from workers.witness import Witness, answers, witness_target


def host(uri: str, name: str = "h1") -> Host:
    return Host(name, 8, 8192, migration_uri=uri)


@pytest.mark.parametrize(("uri", "target"), [
    ("qemu+tcp://10.0.0.5/system", ("10.0.0.5", 16509)),
    ("qemu+tcp://10.0.0.5:16600/system", ("10.0.0.5", 16600)),
    ("qemu+tls://kvm1.example/system", ("kvm1.example", 16514)),
    ("qemu://kvm1.example/system", ("kvm1.example", 16514)),
    ("qemu+ssh://root@kvm2/system", ("kvm2", 22)),
    ("qemu:///system", None),
    ("", None),
    ("qemu+unix:///system", None),
    ("qemu+tcp://10.0.0.5:notaport/system", None),
])
def test_target_from_the_migration_uri(uri: str, target: tuple[str, int] | None) -> None:
    assert witness_target(host(uri)) == target


def test_answers_on_a_listening_port_and_not_on_a_closed_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert answers(("127.0.0.1", port), 1.0)
    assert not answers(("127.0.0.1", port), 1.0)


def test_witness_records_answers_and_probes_each_host_once_at_a_time() -> None:
    release = threading.Event()
    calls: list[tuple[str, int]] = []

    def probe(target: tuple[str, int], timeout_s: float) -> bool:
        calls.append(target)
        release.wait(5)
        return target[0] == "10.0.0.1"

    witness = Witness(1.0, clock=lambda: 42.0, probe=probe)
    hosts = [host("qemu+tcp://10.0.0.1/system", "up"), host("qemu+tcp://10.0.0.2/system", "off"),
             host("", "sim")]
    witness.check(hosts)
    witness.check(hosts)  # probes still in flight: no second one
    release.set()
    deadline = time.monotonic() + 5
    while witness.probing() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(calls) == [("10.0.0.1", 16509), ("10.0.0.2", 16509)]
    assert witness.answered() == {"up": 42.0}
