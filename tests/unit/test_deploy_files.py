"""Everything compose.yaml and the systemd units name exists in the project.

Commands are parsed by the real ``fleet`` CLI (typer's click group, without running them),
``celery -A tasks.app:app`` must import a Celery app, Flower's options must be Flower's,
every ``FLEET_*`` variable must be a field of ``fleet.settings.Settings`` or one of the few
documented compose-only variables, and ``build: .`` must find a Dockerfile that installs
the project's packages.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import fleet.settings as settings_module
from fleet.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = ROOT / "deploy" / "fleet.env.example"
DEPLOY_README = ROOT / "deploy" / "README.md"
ENV_FILE = "/etc/fleet/fleet.env"

# Variables compose.yaml interpolates that are not fleet settings: they describe the
# deployment itself. Each must be used by compose.yaml and documented in deploy/README.md.
COMPOSE_ONLY = {
    "FLEET_REDIS_PASSWORD": "Redis' requirepass and the password in every FLEET_REDIS_URL",
    "FLEET_HOST": "the fleet name of the KVM host an agent container serves",
    "FLEET_CONTROL_HOST": "the control node's address, for agents on the host network",
    "FLEET_HOST_ADDRESS": "the KVM host's address its peers migrate to",
    "FLEET_REDIS_BIND": "the address Redis (and its replica and sentinels) is published on",
    "FLEET_FLOWER_BIND": "the address Flower is published on",
}
# Values standing in for variables and systemd specifiers when commands are parsed.
SAMPLES = {"FLEET_HOST": "kvm1", "FLEET_CONTROL_HOST": "10.0.0.1",
           "FLEET_HOST_ADDRESS": "10.0.0.11", "%i": "kvm1", "%l": "ctl1"}
# Read by fleet.settings.load_settings itself rather than being a setting.
LOADER_ONLY = {"FLEET_CONFIG"}
CONTROL_PLANE = {"redis", "controller", "monitor", "flower", "agent"}
UNIT_NAMES = {"fleet-agent@.service": "agent", "fleet-controller.service": "controller",
              "fleet-monitor.service": "monitor", "fleet-flower.service": "flower"}

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
                  r"|(?P<bare>[A-Za-z_]\w*))")


# ---- reading the files ----------------------------------------------------------------

def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def _variables(text: str) -> list[tuple[str, str | None, str]]:
    """(name, operator, argument) of every ``${...}``/``$NAME`` in compose syntax."""
    text = text.replace("$$", "")
    return [(m["braced"] or m["bare"], m["op"], m["arg"] or "") for m in _VAR.finditer(text)]


def _interpolate(value: str) -> str:
    def sample(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        return SAMPLES.get(name, f"sample-{name.lower()}")

    return _VAR.sub(sample, value.replace("$$", "\0")).replace("\0", "$")


def _mark(value: str) -> str:
    """``value`` with every variable replaced by ``<NAME>``."""
    marked = _VAR.sub(lambda m: f"<{m['braced'] or m['bare']}>", value.replace("$$", "\0"))
    return marked.replace("\0", "$")


def _specifiers(value: str) -> str:
    for spec, sample in SAMPLES.items():
        if spec.startswith("%"):
            value = value.replace(spec, sample)
    return value


def _entrypoint() -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            value = yaml.safe_load(line.split(None, 1)[1])
            assert isinstance(value, list), "ENTRYPOINT must be the exec (JSON) form"
            return [str(v) for v in value]
    raise AssertionError("the Dockerfile has no ENTRYPOINT")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def _env_example() -> dict[str, str]:
    """Assignments in fleet.env.example, commented-out examples included."""
    values = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", raw.strip())
        if match:
            values[match[1]] = match[2]
    return values


def _commands() -> list[tuple[str, list[str]]]:
    """Every command compose.yaml and the unit files run, as (where, argv)."""
    found = []
    entrypoint = _entrypoint()
    for name, service in _compose()["services"].items():
        command = _as_list(service.get("command"))
        if "entrypoint" in service:
            argv = _as_list(service["entrypoint"]) + command
        elif "build" in service:
            argv = entrypoint + command
        else:
            argv = command
        if argv:
            found.append((f"compose:{name}", [_interpolate(a) for a in argv]))
    for path in _unit_files():
        for line in _unit(path).get("Service", {}).get("ExecStart", []):
            found.append((f"unit:{path.name}", shlex.split(_specifiers(line))))
    return found


def _settings_fields() -> dict[str, Any]:
    return {f"FLEET_{name.upper()}": field for name, field in Settings.model_fields.items()}


def _flower_env_ok(name: str) -> bool:
    from flower.command import is_flower_envvar

    return bool(is_flower_envvar(name))


# ---- commands -------------------------------------------------------------------------

def _check_fleet(args: list[str]) -> None:
    import typer.main

    from fleet.cli.main import app

    command: Any = typer.main.get_command(app)
    path = ["fleet"]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        assert args[0] in command.commands, f"`{' '.join(path)}` has no subcommand {args[0]!r}"
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    assert not hasattr(command, "commands"), f"`{' '.join(path)}` needs a subcommand"
    command.make_context(" ".join(path), list(args))  # parses and validates, runs nothing
    if path[1:] == ["agent"]:
        from workers.hypervisors.factory import DRIVERS

        ctx = command.make_context("fleet agent", list(args))
        assert ctx.params["driver"] in DRIVERS, f"unknown driver {ctx.params['driver']!r}"


def _check_celery(args: list[str]) -> None:
    from celery import Celery
    from celery.bin.celery import celery as celery_group
    from flower.options import options as flower_options

    if args[0].startswith("--app="):
        target, rest = args[0].split("=", 1)[1], args[1:]
    else:
        assert args[0] in ("-A", "--app"), f"celery must be told its app first: {args}"
        target, rest = args[1], args[2:]
    module, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    assert isinstance(app, Celery), f"{target} is not a Celery app"
    assert rest and rest[0] in celery_group.commands, f"celery has no command {rest[:1]}"
    if rest[0] == "flower":
        for arg in rest[1:]:
            name = arg.removeprefix("--").split("=", 1)[0].replace("_", "-")
            assert arg.startswith("--") and name in flower_options._options, (
                f"{arg!r} is not a Flower option")


def _check_redis(args: list[str]) -> None:
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs.get("--appendonly") == "yes", "Redis must keep an append-only file"
    assert "--requirepass" in pairs, "Redis must require a password"


COMMANDS = _commands()


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_command_exists(where: str, argv: list[str]) -> None:
    program, args = Path(argv[0]).name, argv[1:]
    checks = {"fleet": _check_fleet, "celery": _check_celery, "redis-server": _check_redis}
    assert program in checks, f"{where} runs {program!r}, which the project does not provide"
    checks[program](args)


def test_the_units_run_every_process() -> None:
    runs = {where: argv for where, argv in COMMANDS}
    for unit, process in UNIT_NAMES.items():
        assert process in runs[f"unit:{unit}"][1:4], (unit, runs[f"unit:{unit}"])


# ---- compose.yaml ---------------------------------------------------------------------

def test_compose_runs_the_whole_control_plane() -> None:
    services = set(_compose()["services"])
    missing = CONTROL_PLANE - services
    if missing == {"monitor"}:
        pytest.xfail("compose.yaml's monitor service lands with issue 5")
    assert not missing, f"compose.yaml lacks {sorted(missing)}"


def test_compose_environment_is_fleet_settings() -> None:
    fields = _settings_fields()
    for name, service in _compose()["services"].items():
        env = _environment(service)
        for key in env:
            if key.startswith("FLOWER_"):
                assert _flower_env_ok(key), f"{name}: {key} is not a Flower option"
                continue
            assert key in fields, f"{name}: {key} is not a fleet setting (fleet.settings)"
        fleet = {k[len("FLEET_"):].lower(): _interpolate(v) for k, v in env.items()
                 if k.startswith("FLEET_")}
        Settings(**fleet)  # the values, with samples for the variables, are valid


def test_compose_variables_are_settings_or_documented() -> None:
    fields = _settings_fields()
    used = _variables(COMPOSE.read_text())
    names = {name for name, _, _ in used}
    for name in names:
        assert name.startswith("FLEET_"), f"{name}: compose variables are FLEET_*"
        assert name in fields or name in COMPOSE_ONLY, (
            f"{name} is neither a fleet setting nor a documented compose-only variable")
    assert set(COMPOSE_ONLY) <= names, "COMPOSE_ONLY lists variables compose.yaml no longer uses"
    readme = DEPLOY_README.read_text()
    for name in COMPOSE_ONLY:
        assert name in readme, f"deploy/README.md does not document {name}"
    for name in names:  # one default per variable, and a setting's default is fleet's own
        defaults = {arg for n, op, arg in used if n == name and op in (":-", "-")}
        assert len(defaults) <= 1, f"{name} has different defaults: {sorted(defaults)}"
        if defaults and name in fields:
            assert defaults == {str(fields[name].default)}, (name, defaults)


def test_compose_secrets_come_from_the_environment() -> None:
    services = _compose()["services"]
    redis_cmd = _as_list(services["redis"].get("command"))
    password = redis_cmd[redis_cmd.index("--requirepass") + 1]
    assert _mark(password) == "<FLEET_REDIS_PASSWORD>", password
    for name, service in services.items():
        url = _environment(service).get("FLEET_REDIS_URL")
        if url is None:
            continue
        match = re.match(r"^rediss?://:(?P<pw>[^@]*)@(?P<host>[^:/]+)", _mark(url))
        assert match, f"{name}: FLEET_REDIS_URL has no password: {url}"
        assert match["pw"] == "<FLEET_REDIS_PASSWORD>", f"{name}: {url}"
        if service.get("network_mode") == "host":
            assert match["host"] == "<FLEET_CONTROL_HOST>", f"{name}: {url}"
        else:
            assert match["host"] in services, f"{name}: Redis host {match['host']!r}"


def test_compose_flower_requires_auth_from_the_environment() -> None:
    flower = _compose()["services"]["flower"]
    argv = _as_list(flower.get("entrypoint")) + _as_list(flower.get("command"))
    auth = [a.split("=", 1)[1] for a in argv if a.startswith("--basic-auth=")]
    auth += [v for k, v in _environment(flower).items() if k == "FLOWER_BASIC_AUTH"]
    assert auth, "Flower runs without basic auth"
    for value in auth:
        literal = _VAR.sub("", value).replace(":", "")
        assert _variables(value) and not literal, f"Flower's credentials are literal: {value}"


def test_compose_agent_reaches_libvirt() -> None:
    agent = _compose()["services"]["agent"]
    assert agent.get("network_mode") == "host"
    mounts = [str(v).split(":")[1] for v in agent.get("volumes", [])]
    assert any(m in ("/var/run/libvirt", "/run/libvirt") for m in mounts), mounts
    assert agent.get("profiles"), "the agent runs on KVM hosts only (a compose profile)"


def test_compose_builds_from_a_dockerfile_with_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {part.strip("./") for line in dockerfile.splitlines() if line.startswith("COPY")
              for part in line.split()[1:-1]}
    for package in packages:
        assert package.rstrip("*") in copied, f"the Dockerfile does not copy {package}"
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    assert _entrypoint()[0] in project["project"]["scripts"]
    extras = re.findall(r"pip install [^\n]*'\.\[([\w,]+)\]'", dockerfile)
    assert extras, "the Dockerfile does not pip install the project"
    for extra in extras[0].split(","):
        assert extra in project["project"]["optional-dependencies"], extra
    deps = " ".join(project["project"]["dependencies"])
    assert "celery" in deps and "flower" in deps  # the image's celery and flower
    for name, service in _compose()["services"].items():
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) \
                else service["build"].get("context", ".")
            assert (ROOT / context / "Dockerfile").is_file(), name


# ---- systemd units and the environment file -------------------------------------------

def test_the_units_are_there() -> None:
    assert {p.name for p in _unit_files()} >= set(UNIT_NAMES)


@pytest.mark.parametrize("path", _unit_files(), ids=lambda p: p.name)
def test_unit_is_a_sensible_service(path: Path) -> None:
    unit = _unit(path)
    service = unit["Service"]
    assert service["EnvironmentFile"] == [ENV_FILE]
    assert service["Restart"] == ["on-failure"]
    assert service["User"] == ["fleet"], "fleet's services do not run as root"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert service.get(key) == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0].split()
    (start,) = service["ExecStart"]
    assert start.startswith("/opt/fleet/bin/"), "one virtualenv serves every unit"


def test_agent_unit_serves_its_instance_over_libvirt() -> None:
    unit = _unit(UNITS / "fleet-agent@.service")
    assert "libvirtd.service" in unit["Unit"]["After"][0].split()
    argv = shlex.split(unit["Service"]["ExecStart"][0])
    assert argv[1:] == ["agent", "--host", "%i", "--driver", "libvirt", "--uri",
                        "qemu:///system", "--address", "${FLEET_HOST_ADDRESS}"]
    assert unit["Service"]["SupplementaryGroups"] == ["libvirt"]


def test_unit_variables_come_from_the_env_file() -> None:
    provided = _env_example()
    for path in _unit_files():
        for values in _unit(path).get("Service", {}).values():
            for value in values:
                for name, _, _ in _variables(value):  # $$ (a literal $) is skipped
                    assert name in provided, f"{path.name} uses ${name}: not in fleet.env"
    text = "\n".join(p.read_text() for p in _unit_files())
    for name in re.findall(r"\$\$\{?([A-Z_][A-Z0-9_]*)", text):  # read by a shell
        assert name in provided, name


def test_env_example_names_only_real_settings() -> None:
    fields = _settings_fields()
    values = _env_example()
    assert "FLEET_REDIS_URL" in values and "FLOWER_BASIC_AUTH" in values
    for name in values:
        if name.startswith("FLOWER_"):
            assert _flower_env_ok(name), f"{name} is not a Flower option"
        elif name in LOADER_ONLY:
            assert f'"{name}"' in Path(settings_module.__file__ or "").read_text(), name
        elif name not in COMPOSE_ONLY:
            assert name in fields, f"{name} is not a fleet setting (fleet.settings)"
    Settings(**{k[len("FLEET_"):].lower(): v for k, v in values.items()
                if k.startswith("FLEET_") and k not in LOADER_ONLY and k not in COMPOSE_ONLY})


@pytest.mark.parametrize(("auth", "ok"), [(None, False), ("", False), ("oncall", False),
                                          ("oncall:", False), ("oncall:pw", True)])
def test_flower_unit_refuses_to_run_open(auth: str | None, ok: bool) -> None:
    unit = _unit(UNITS / "fleet-flower.service")
    (guard,) = unit["Service"]["ExecStartPre"]
    argv = shlex.split(guard.replace("$$", "$"))
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert (done.returncode == 0) == ok, done.stderr
    assert "pw" not in guard  # the secret is read by the shell, never on a command line


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for path in _unit_files():
        shutil.copy(path, tmp_path / path.name)
    done = subprocess.run([analyze, "verify", "--man=no", *sorted(tmp_path.iterdir())],
                          capture_output=True, text=True, check=False, cwd=tmp_path,
                          timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "/opt/fleet/bin/" not in line]  # not installed here
    assert problems == []


def test_deploy_readme_covers_the_files() -> None:
    readme = DEPLOY_README.read_text()
    for name in [*UNIT_NAMES, "fleet.env.example", "compose.yaml", ENV_FILE]:
        assert name in readme, f"deploy/README.md does not mention {name}"


SENTINEL_COMPOSE = ROOT / "compose.sentinel.yaml"


def test_the_sentinel_variant_overrides_real_services_with_valid_settings() -> None:
    from fleet.core.sentinel_url import parse_sentinel

    base = _compose()["services"]
    data = yaml.safe_load(SENTINEL_COMPOSE.read_text())
    services = data["services"]
    sentinels = {n for n in services if n.startswith("sentinel-")}
    assert len(sentinels) == 3 and "redis-replica" in services
    fields = _settings_fields()
    for name, _, _ in _variables(SENTINEL_COMPOSE.read_text()):
        assert name in fields or name in COMPOSE_ONLY, name
    for name in ("controller", "monitor", "flower", "agent"):
        assert name in base, f"{name} overrides no service of compose.yaml"
        url = _interpolate(_environment(services[name])["FLEET_REDIS_URL"])
        found = parse_sentinel(url)
        assert found.master == "fleet" and len(found.sentinels) == 3 and found.password
        if name != "agent":  # inside the compose network: the sentinel services by name
            assert {h for h, _ in found.sentinels} == sentinels
        Settings(redis_url=url)


def test_the_sentinels_write_a_configuration_that_watches_the_master() -> None:
    data = yaml.safe_load(SENTINEL_COMPOSE.read_text())
    entry = data["services"]["sentinel-1"]["entrypoint"]
    script = entry[2].replace("$$", "$").split(" && exec ")[0].replace(
        "/tmp/sentinel.conf", "/dev/stdout")
    out = subprocess.run(["sh", "-c", script], env={"FLEET_REDIS_PASSWORD": "pw"},
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert "sentinel monitor fleet redis 6379 2" in lines  # a quorum of 2 of 3
    assert "sentinel auth-pass fleet pw" in lines and "port 26379" in lines
    assert entry[2].endswith("exec redis-server /tmp/sentinel.conf --sentinel")
