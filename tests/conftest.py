"""For every test: no payload the bot sent to a fake Slack broke Slack's Block Kit limits (bot.slack_limits).

The fake answers such a payload as Slack would (`invalid_blocks`, `msg_too_long`, `invalid_arguments`)
and records it; a test that sends one on purpose takes the record with `take_limit_violations()`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.console.fake_slack import live_fakes, tracking_fakes


@pytest.fixture(autouse=True)
def payloads_within_slack_limits() -> Iterator[None]:
    before = {id(fake): (fake, len(fake.limit_violations)) for fake in live_fakes()}
    with tracking_fakes() as made:
        yield
    seen = [(fake, count) for fake, count in before.values()] + [(fake, 0) for fake in made]
    new = [str(v) for fake, count in seen for v in fake.limit_violations[count:]]
    assert not new, "payloads Slack would refuse:\n  " + "\n  ".join(new)
