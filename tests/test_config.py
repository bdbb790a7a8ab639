"""The journeys file and the settings: mistakes are refused when they load, naming what is wrong."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from models.contracts import Segment, parse_duration
from models.journeys import ConfigError, load_journeys
from models.settings import ROOT, Settings

DEMO = ROOT / "config" / "journeys.demo.toml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1d12h", timedelta(hours=36)),
        ("30s", timedelta(seconds=30)),
    ],
)
def test_durations_as_a_marketer_writes_them(text: str, expected: timedelta):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "2x", "h2", "2h-", "two days"])
def test_bad_durations_are_refused(text: str):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_both_shipped_journey_files_load_with_the_same_steps():
    real, demo = load_journeys(ROOT / "config" / "journeys.toml"), load_journeys(DEMO)
    real_steps, demo_steps = real.journeys.post_purchase.steps, demo.journeys.post_purchase.steps
    assert [s.name for s in real_steps] == [s.name for s in demo_steps]
    assert [s.after for s in real_steps] == [
        timedelta(hours=2),
        timedelta(days=7),
        timedelta(days=30),
        timedelta(days=90),
    ]
    assert all(s.after <= timedelta(minutes=1) for s in demo_steps)


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "journeys.toml"
    text = DEMO.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('template = "post_purchase/thank_you"', 'template = "post_purchase/thank_yuo"', "thank_yuo.sms.j2"),
        ('after = "15s"', 'after = "15 seconds"', "not a duration"),
        ('after = "15s"', 'after = "1s"', "in the order they are sent"),
        ('name = "loyalty_review"', 'name = "thank_you"', "unique"),
        ('channels = ["email", "sms"]', 'channels = ["fax"]', "channels"),
        ('[brand]\nname = "Northwind Outfitters"', "[brand]", "brand.name"),
        ('name = "thank_you"', 'name = "thank_you"\nsms_segments = 1', "thank_you.sms.j2 is 2 segments"),
        ('default_timezone = "America/New_York"', 'default_timezone = "Mars/Olympus"', "not an IANA time zone"),
        ("[policy]", '[policy]\nmarketing_window = "21:00-09:00"', "must start before it ends"),
        ("[policy]", '[policy]\nsms_cap = { count = 0, per = "24h" }', "sms_cap.count"),
    ],
)
def test_a_broken_journeys_file_is_refused_naming_the_problem(tmp_path: Path, old: str, new: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_journeys(_broken(tmp_path, old, new))


def test_a_missing_journeys_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_journeys(tmp_path / "nope.toml")


def test_segments_by_order_count_or_lifetime_value():
    segments = load_journeys(DEMO).segments
    assert segments.of(1, Decimal("10")) == Segment.first_time
    assert segments.of(2, Decimal("10")) == Segment.repeat
    assert segments.of(5, Decimal("10")) == Segment.vip
    assert segments.of(1, Decimal("500")) == Segment.vip


def test_temporal_cloud_turns_tls_on_with_an_api_key():
    cloud = Settings(
        _env_file=None,
        TEMPORAL_ADDRESS="shop.a1b2c.tmprl.cloud:7233",
        TEMPORAL_NAMESPACE="shop.a1b2c",
        TEMPORAL_API_KEY="key",
    )
    assert (cloud.temporal_address, cloud.temporal_namespace, cloud.temporal_tls_enabled) == (
        "shop.a1b2c.tmprl.cloud:7233",
        "shop.a1b2c",
        True,
    )
    assert not Settings(_env_file=None).temporal_tls_enabled
    assert not Settings(_env_file=None, TEMPORAL_API_KEY="").temporal_tls_enabled  # blank means unset
    assert Settings(_env_file=None, TEMPORAL_TLS="true").temporal_tls_enabled


def test_settings_come_from_the_environment_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / ".env").write_text("TEMPORAL_TASK_QUEUE=from-dotenv\nCOMEBACK_API_TOKEN=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMEBACK_API_TOKEN", "from-env")
    settings = Settings()
    assert settings.temporal_task_queue == "from-dotenv"
    assert settings.api_token == "from-env"  # the environment wins over .env
