"""Driving real ``nidan`` processes: start ``nidan serve``, read what it prints, get codes from ``oathtool``."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
import pytest

PASSWORD = "correct horse battery"
START_TIMEOUT = 60.0
SETUP_LINE = re.compile(
    r"^Create the first administrator: (http://127\.0\.0\.1:(\d+)/setup\?token=([A-Za-z0-9_-]{43}))$"
)


def oathtool_path() -> str:
    # Called in the test body, not a fixture: a missing client is a FAILURE, not a skip or an error.
    path = shutil.which("oathtool")
    if path is None:
        pytest.fail(
            "oathtool is not installed: the end-to-end sign-in test needs the real client "
            "(Debian/Ubuntu: apt-get install oathtool; scripts/test installs it)"
        )
    return path


def oathtool_code(secret: str, at: datetime | None = None) -> str:
    command = [oathtool_path(), "--totp", "-b"]
    if at is not None:
        command += ["--now", at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")]
    result = subprocess.run([*command, secret], capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode == 0, result.stderr
    code = result.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), code
    return code


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def nidan(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nidan", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def init(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nidan init``: the instance commands need before any server has run (only init and serve make one)."""
    made = nidan(env, "init")
    assert made.returncode == 0, made.stderr
    return made


class Server:
    """``nidan serve`` in its own process group; stdout is read as it comes, stderr goes to a file."""

    def __init__(self, env: dict[str, str], log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.stderr_path = log_dir / f"serve-{self.port}.stderr"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nidan", "serve", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._pumping = threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True)
        self._pumping.start()

    def _pump(self, stream: IO[str]) -> None:
        # The reader closes the pipe at its end: left to the garbage collector it is a ResourceWarning (an error).
        with stream:
            for line in stream:
                self.lines.put(line.rstrip("\n"))

    def describe(self) -> str:
        return "stdout:\n" + "\n".join(self.seen) + "\nstderr:\n" + self.stderr_path.read_text()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    pytest.fail(f"nidan serve exited with {self.process.returncode}\n{self.describe()}")
                continue
            self.seen.append(line)
            found = pattern.search(line)
            if found:
                return found
        pytest.fail(f"nidan serve did not print {pattern.pattern!r} in {timeout} s\n{self.describe()}")

    def wait_until_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"nidan serve exited with {self.process.returncode}\n{self.describe()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"nidan serve did not answer /healthz in {timeout} s\n{self.describe()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown, no rollback by the process itself (a crash)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self._pumping.join(timeout=15)  # the pipe ends with the process group; the reader then closes it
        self._stderr.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
