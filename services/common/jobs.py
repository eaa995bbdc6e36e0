"""Background jobs: one pass every interval in a thread of its own.

The periodic jobs of DESIGN's "Where state lives" (the cache sync, CRL
rebuilds, responder renewal) each take their database lease inside the
pass; this module only runs passes, survives their failures and stops them.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable


class PeriodicJob:
    """Runs ``run_pass`` every ``interval`` (and on ``wake``) until stopped.

    A pass that raises is handed to ``on_error`` and the next pass runs as
    planned: a job never dies of one failure.
    """

    def __init__(
        self,
        name: str,
        interval: dt.timedelta,
        run_pass: Callable[[], None],
        on_error: Callable[[Exception], None],
        *,
        first_pass_at_once: bool = True,
    ) -> None:
        self._name = name
        self._interval_seconds = interval.total_seconds()
        self._run_pass = run_pass
        self._on_error = on_error
        self._first_pass_at_once = first_pass_at_once
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next pass now rather than after the interval."""
        self._wake.set()

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Let the pass in progress finish, then end the thread."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_seconds)

    def _loop(self) -> None:
        if not self._first_pass_at_once:
            self._pause()
        while not self._stopped.is_set():
            try:
                self._run_pass()
            except Exception as error:  # handed on; the next pass retries
                self._on_error(error)
            self._pause()

    def _pause(self) -> None:
        self._wake.wait(self._interval_seconds)
        self._wake.clear()
