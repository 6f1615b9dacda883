"""Progress lines for long operator commands (backup, restore, check)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Calls ``report`` at most every ``every`` seconds, or when forced."""

    def __init__(self, report: Callable[[str], None], every: float = 2.0) -> None:
        self.report, self.every = report, every
        self._last = time.monotonic()

    def __call__(self, message: Callable[[], str], force: bool = False) -> None:
        if force or time.monotonic() - self._last >= self.every:
            self.report(message())
            self._last = time.monotonic()
