"""``python -m writer``: one writer process (the fleet's writer pods, and the kill -9 tests).

Flags override the settings file and environment; SIGTERM/SIGINT finish the current batch, then exit.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from common.settings import load_settings
from writer.worker import run_writer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m writer", description=__doc__)
    parser.add_argument("--config", help="settings file (YAML or JSON)")
    parser.add_argument("--storage", help="store URL")
    parser.add_argument("--queue", help="queue URL (redis://...)")
    parser.add_argument("--consumer-name", help="name in the consumer group")
    parser.add_argument("--batch-max-events", type=int)
    parser.add_argument("--reclaim-idle-seconds", type=float)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        "storage": args.storage,
        "queue": args.queue,
        "writer": {
            "consumer_name": args.consumer_name,
            "batch_max_events": args.batch_max_events,
            "reclaim_idle_seconds": args.reclaim_idle_seconds,
        },
    }
    settings = load_settings(config_file=args.config, overrides=overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("clusterpedia.writer").info("signal %d: finishing the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_writer(settings, stop)


if __name__ == "__main__":
    main()
