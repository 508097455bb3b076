"""Which libvirt URIs fleet opens: a host's ``migration_uri`` comes from the store, where
anything that can write to Redis could put ``qemu+ext:///system?command=/tmp/x`` (libvirt
runs that command as root) or a parameter that turns off TLS checks.

Allowed: the local daemon (``qemu:///system`` or ``/session``, no parameters), and a
remote one over ``qemu+tls`` or ``qemu+ssh`` — plus ``qemu+tcp`` (in clear) only where
the configuration allows it — naming a host, the ``/system`` or ``/session`` path, and no
query parameters at all (``command``, ``netcat``, ``socket``, ``keyfile``, ``pkipath``,
``no_verify``… each changes what libvirt runs or trusts).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fleet.core.errors import InvalidInput

REMOTE = ("qemu+tls", "qemu+ssh")
PLAIN = "qemu+tcp"
PATHS = ("/system", "/session")


def check_libvirt_uri(uri: str, allow_tcp: bool = False) -> str:
    """``uri`` if fleet may open it (see the module), else ``InvalidInput`` saying why."""
    try:
        parts = urlsplit(uri)
        _ = parts.port  # a port out of range raises here
    except ValueError as exc:
        raise InvalidInput(f"libvirt URI {uri!r} is malformed: {exc}") from None
    allowed = (*REMOTE, PLAIN) if allow_tcp else REMOTE
    if parts.query or parts.fragment or "?" in uri:
        raise InvalidInput(f"libvirt URI {uri!r} refused: parameters can make libvirt run"
                           " commands or skip checks; fleet takes none")
    if parts.path not in PATHS:
        raise InvalidInput(f"libvirt URI {uri!r} refused: the path must be /system or"
                           " /session")
    if parts.scheme == "qemu" and not parts.netloc:
        return uri  # this host's own daemon
    if parts.scheme == PLAIN and not allow_tcp:
        raise InvalidInput(f"libvirt URI {uri!r} refused: qemu+tcp migrates in clear; use"
                           " qemu+tls (or allow it with FLEET_MIGRATION_ALLOW_TCP=true)")
    if parts.scheme not in allowed:
        raise InvalidInput(f"libvirt URI {uri!r} refused: transport {parts.scheme!r} is not"
                           f" one of {', '.join(allowed)}")
    if not parts.hostname:
        raise InvalidInput(f"libvirt URI {uri!r} refused: it names no host")
    if parts.username and parts.scheme != "qemu+ssh":
        raise InvalidInput(f"libvirt URI {uri!r} refused: a user belongs to qemu+ssh only")
    return uri
