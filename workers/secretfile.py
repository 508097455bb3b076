"""Files that hold secrets (passwords, private keys): read only when private.

A secret that group or others can read is not a secret any more, so such a file is
refused with the mode it has and how to fix it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fleet.core.errors import FleetError


def read_private(path: str | Path, what: str, error: type[FleetError]) -> bytes:
    """The bytes of ``path`` (``what`` names it in messages); ``error`` unless only its
    owner may read it, or when it cannot be read."""
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise error(f"{what} {path} is readable by group or others"
                        f" (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
