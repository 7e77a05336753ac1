"""``python -m synchro``: one synchro worker, configured from the environment (CLUSTERPEDIA_*) and
an optional config file; SIGTERM/SIGINT stop it gracefully (its Leases are handed back)."""

from __future__ import annotations

import signal
import threading

from common.observability import setup_logging
from common.settings import load_settings
from synchro.manager import run_synchro


def main() -> None:
    settings = load_settings()
    setup_logging(settings, "synchro")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = threading.Thread(target=run_synchro, args=(settings, stop), name="synchro")
    worker.start()
    while worker.is_alive():
        worker.join(0.5)


if __name__ == "__main__":
    main()
