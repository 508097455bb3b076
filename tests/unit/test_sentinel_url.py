"""``sentinel://`` URLs: parsed, refused with a reason, and given to Celery in its form."""

from __future__ import annotations

import pytest

from fleet.core.errors import InvalidInput
from fleet.core.sentinel_url import SentinelURL, parse_sentinel
from fleet.settings import load_settings
from tasks.app import celery_config


def test_sentinels_master_db_and_password_are_read() -> None:
    found = parse_sentinel("sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26380/3?master=fleet")
    assert found == SentinelURL((("10.0.0.1", 26379), ("10.0.0.2", 26380)), "fleet", 3,
                                None, "s@cret")
    assert parse_sentinel("sentinel://h:1?master=m") == SentinelURL((("h", 1),), "m")


@pytest.mark.parametrize(("url", "needle"), [
    ("sentinel://h1:26379", "?master=NAME"),
    ("sentinel://?master=m", "at least one sentinel"),
    ("sentinel://h1:notaport?master=m", "is not host:port"),
    ("sentinel://h1:26379/x?master=m", "is not a number"),
    ("sentinel://h1:70000?master=m", "is not host:port"),
])
def test_bad_sentinel_urls_are_refused_with_the_reason(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("?", r"\?")):
        parse_sentinel(url)
    with pytest.raises(InvalidInput, match="redis_url"):
        load_settings(redis_url=url)


def test_celery_gets_one_sentinel_url_each_and_the_master_name() -> None:
    settings = load_settings(redis_url="sentinel://u:pw@a:1,b:2/5?master=fleet",
                             prefix="p")
    config = celery_config(settings)
    expected = "sentinel://u:pw@a:1/5;sentinel://u:pw@b:2/5"
    assert config["broker_url"] == config["result_backend"] == expected
    for key in ("broker_transport_options", "result_backend_transport_options"):
        options = config[key]
        assert isinstance(options, dict) and options["master_name"] == "fleet"
        assert options["global_keyprefix"] == "p:celery:"


def test_a_plain_url_is_passed_as_it_is() -> None:
    config = celery_config(load_settings(redis_url="redis://h:6379/2"))
    assert config["broker_url"] == "redis://h:6379/2"
    options = config["broker_transport_options"]
    assert isinstance(options, dict) and "master_name" not in options
