"""A feed session's settings come from the configuration's ``[feed]`` table (grouping, the
watchdog, the client's queue and health thresholds), and are stored with the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ultrathink import services
from ultrathink.engine.feed_bars import FeedBars
from ultrathink.engine.spec import RunSpec
from ultrathink.errors import ConfigError


def _spec(tmp_path: Path, text: str) -> RunSpec:
    config = tmp_path / "feed.toml"
    config.write_text(text)
    request = services.RunRequest(
        mode="paper", strategy="sma_cross", feed="tcp://127.0.0.1:9", symbols="BBB,AAA",
        config_path=str(config), store=False,
    )  # fmt: skip
    return services._spec(request, None)


def test_the_feed_table_reaches_the_session_and_its_client(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        "[feed]\ngroup_wait_s = 0.01\nstale_s = 3\n[feed.client]\nqueue_size = 500\nstall_s = 2\n",
    )
    feed = spec.data
    assert isinstance(feed, FeedBars)
    assert (feed.group_wait_s, feed.stale_s) == (0.01, 3.0)
    assert feed.config.queue_size == 500 and feed.config.stall_s == 2.0
    assert feed.config.failback_s == 30.0, "what is not given keeps its default"
    assert spec.config.feed.client.queue_size == 500, "stored with the run's configuration"


def test_without_a_feed_table_the_defaults_hold(tmp_path: Path) -> None:
    feed = _spec(tmp_path, "").data
    assert isinstance(feed, FeedBars)
    assert (feed.group_wait_s, feed.stale_s, feed.config.queue_size) == (0.05, 10.0, 10_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[feed.client]\nqueue_size = 0\n", "feed.client.queue_size must be greater than or"),
        ("[feed]\ngroup_wait = 1\n", "feed.group_wait is not a setting"),
        ("[feed.client]\nbackoff_initial_s = 5\nbackoff_max_s = 1\n", "backoff_max_s (1.0) must"),
    ],
)
def test_a_bad_feed_setting_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _spec(tmp_path, text)
    assert message in str(caught.value) and "\n" not in str(caught.value)
