"""Validation of the names operators type: hosts, VMs, groups and job ids."""

from __future__ import annotations

import re

from fleet.core.errors import InvalidInput

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_JOB_ID = re.compile(r"[0-9a-f]{12,32}")


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid host/VM/group name, else raise ``InvalidInput``."""
    if not _NAME.fullmatch(value):
        raise InvalidInput(
            f"malformed {kind} name {value!r}: use 1-63 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def check_job_id(value: str) -> str:
    """Return ``value`` if it looks like a job id, else raise ``InvalidInput``."""
    if not _JOB_ID.fullmatch(value):
        raise InvalidInput(f"malformed job id {value!r}")
    return value


def parse_name_list(kind: str, value: str) -> list[str]:
    """Split a comma-separated list of names, validating each."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise InvalidInput(f"empty {kind} list")
    return [check_name(kind, name) for name in names]
