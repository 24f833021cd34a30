"""Asking the operating system whether its clock is synchronised (TOTP codes depend on it).

Tried in order: systemd's ``timedatectl show -p NTPSynchronized --value``, the flag file systemd-timesyncd keeps
(``/run/systemd/timesync/synchronized``), and ``chronyc tracking``. The first that can tell answers.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from nidan.core.models import ClockSync

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
TIMEOUT_SECONDS = 5.0

Runner = Callable[[Sequence[str]], str | None]


def run_quietly(command: Sequence[str]) -> str | None:
    """The command's standard output, or ``None`` when it is missing, fails or takes too long."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - fixed commands, no shell, no user input
            list(command), capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


class SystemClockSync:
    """The ``ClockSyncProbe`` port; ``run`` and ``flag`` are replaceable for tests."""

    def __init__(self, run: Runner = run_quietly, flag: Path = TIMESYNCD_FLAG) -> None:
        self._run = run
        self._flag = flag

    def __call__(self) -> ClockSync:
        answer = self._run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if answer is not None and answer.strip() in ("yes", "no"):
            return ClockSync(answer.strip() == "yes", "timedatectl", f"NTPSynchronized={answer.strip()}")
        if self._flag.exists():
            return ClockSync(True, str(self._flag))
        tracking = self._run(["chronyc", "tracking"])
        if tracking is not None:
            status = next(
                (line.split(":", 1)[1].strip() for line in tracking.splitlines() if line.startswith("Leap status")),
                None,
            )
            if status is not None:
                return ClockSync(status != "Not synchronised", "chronyc tracking", f"Leap status: {status}")
        return ClockSync(None, "timedatectl, /run/systemd/timesync/synchronized, chronyc")
