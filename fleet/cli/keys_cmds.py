"""``fleet keys``: the signing keys of the control plane and the agents."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.core.errors import InvalidInput

keys_app = typer.Typer(help="Signing keys: work sent to hosts is signed, unsigned work is"
                       " refused.", no_args_is_help=True)


@keys_app.command("init")
def keys_init(
    directory: Annotated[str, typer.Argument(help="Where to write the keys.")],
    role: Annotated[list[str] | None, typer.Option(
        "--role", help="Only this role's pair (control or agent); repeatable.")] = None,
) -> None:
    """Create a key pair per role in DIRECTORY (keys 0600); pairs already there are kept.

    Give the control plane's machines control.key, control.pub and agent.pub; give each
    KVM host agent.key and control.pub; point FLEET_KEYS_DIR at the directory."""
    from workers.signing import ROLES, generate

    roles = role or list(ROLES)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidInput(f"unknown role {unknown[0]!r}; one of {', '.join(ROLES)}")
    try:
        written = generate(directory, roles)
    except OSError as exc:
        raise InvalidInput(f"cannot write keys in {directory}: {exc.strerror}") from None
    typer.echo(f"{directory}: wrote {', '.join(written)}" if written
               else f"{directory}: the keys exist already; nothing written")
