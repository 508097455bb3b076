"""Configuration from environment and TOML; invalid input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.core.errors import InvalidInput
from fleet.core.names import check_job_id, check_name, parse_name_list
from fleet.settings import load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_REDIS_URL", raising=False)
    monkeypatch.delenv("FLEET_CONFIG", raising=False)
    assert load_settings().redis_url == "redis://127.0.0.1:6379/0"


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text('[fleet]\nprefix = "fromfile"\nstall_timeout_s = 7\n')
    monkeypatch.setenv("FLEET_CONFIG", str(cfg))
    monkeypatch.setenv("FLEET_PREFIX", "fromenv")
    s = load_settings()
    assert s.prefix == "fromenv" and s.stall_timeout_s == 7


@pytest.mark.parametrize(("content", "needle"), [
    ("prefix = 'bad prefix'", "prefix"),
    ("nonsense = 1", "nonsense"),
    ("redis_url = 'http://x'", "redis_url"),
    ("this is not toml", "config file"),
])
def test_broken_config_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   content: str, needle: str) -> None:
    cfg = tmp_path / "fleet.toml"
    cfg.write_text(content)
    monkeypatch.setenv("FLEET_CONFIG", str(cfg))
    with pytest.raises(InvalidInput) as err:
        load_settings()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_CONFIG", "/nonexistent/fleet.toml")
    with pytest.raises(InvalidInput, match="config file"):
        load_settings()


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 64, "h1;rm", "ü", "evil\n", "h1\n",
                                  "\nh1", "h1\r"])
def test_malformed_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_name("host", name)


def test_ids_and_prefixes_with_a_trailing_newline_are_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput):
        check_job_id("0123456789abcdef\n")
    monkeypatch.setenv("FLEET_PREFIX", "fleet\n")
    with pytest.raises(InvalidInput, match="prefix"):
        load_settings()


@pytest.mark.parametrize("url", ["rediss://", "redis://:S3cret@", "redis://h:99999/0",
                                 "redis://h/zero", "unix://", "rediss://:S3cret@:6380/0"])
def test_a_redis_url_without_a_host_or_with_a_bad_port_is_one_line_without_its_password(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("FLEET_REDIS_URL", url)
    with pytest.raises(InvalidInput, match="redis_url") as caught:
        load_settings()
    assert "\n" not in str(caught.value) and "S3cret" not in str(caught.value)


def test_name_lists() -> None:
    assert parse_name_list("host", "h1, h2,h3") == ["h1", "h2", "h3"]
    with pytest.raises(InvalidInput):
        parse_name_list("host", " , ")
