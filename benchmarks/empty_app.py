"""The baseline for `benchmarks.ack_latency`: a Bolt app whose listeners only ack, served exactly as
`mam-bot serve` serves the bot (sync `App(process_before_response=True)`, `bot.http.serve`: uvicorn,
the heap frozen once the app is built).

    python -m benchmarks.empty_app --port 3001   (SLACK_SIGNING_SECRET from the environment)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.authorization import AuthorizeResult

from bot.app import freeze_startup_heap
from bot.http import serve
from bot.store.db import Store, make_engine


def build_empty_app(signing_secret: str) -> App:
    def authorize(**_: Any) -> AuthorizeResult:
        # Same shape as the bot's: identity fixed at start, no Slack call per request.
        return AuthorizeResult(enterprise_id=None, team_id="T0CONSOLE", bot_token="xoxb-bench",
                               bot_user_id="UMAMBOT01", bot_id="BMAMBOT01")

    app = App(signing_secret=signing_secret, authorize=authorize, process_before_response=True,
              token_verification_enabled=False)

    @app.command("/mam")
    def command(ack: Ack) -> None:
        ack()

    @app.action("connectors_recheck")
    def recheck(ack: Ack) -> None:
        ack()

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args(argv)
    secret = os.environ.get("SLACK_SIGNING_SECRET", "")
    if not secret:
        print("SLACK_SIGNING_SECRET is not set", file=sys.stderr)
        return 2
    # /healthz pings a database, as the bot's does: an SQLite file of its own.
    store = Store(make_engine(f"sqlite:///{tempfile.mkdtemp(prefix='empty-app-')}/empty.db"))
    app = build_empty_app(secret)
    freeze_startup_heap()  # as `mam-bot serve` does once its app is built
    serve(app, store, host=args.host, port=args.port, signing_secret=secret)  # no replay store: the baseline
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
