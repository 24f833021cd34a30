"""``nidan serve`` in its own process group, and what /proc says about that group (CPU time, peak RSS)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: How a server started with a ``python_path`` says where its nidan came from (the first line of its log).
NIDAN_FILE_MARK = "bench: nidan imported from "
#: ``python -m nidan`` with that line first: the same module run the same way (runpy, as -m does), after the
#: package it will run was imported and named.
LAUNCHER = (
    "import runpy, sys, nidan; "
    f"print({NIDAN_FILE_MARK!r} + nidan.__file__, flush=True); "
    "sys.argv[0] = 'nidan'; "
    "runpy.run_module('nidan', run_name='__main__', alter_sys=True)"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    cpu_seconds: float


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(ppid, pgrp, utime+stime in seconds) of ``pid``, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # fields[0] is the state (field 3 of proc(5))
    ppid, pgrp = int(fields[1]), int(fields[2])
    utime, stime = int(fields[11]), int(fields[12])
    return ppid, pgrp, (utime + stime) / CLOCK_TICKS


def group_processes(pgid: int) -> list[ProcessInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is not None and stat[1] == pgid:
            found.append(ProcessInfo(int(entry), stat[0], stat[2]))
    return found


def postgres_cpu_seconds() -> float:
    """utime+stime of every PostgreSQL server process on this machine (its backends, writers, WAL writer): the
    database's share of the work, which the server's own CPU figure leaves out."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        stat = _stat(int(entry))
        if stat is not None:
            total += stat[2]
    return total


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the process's peak resident set size, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class NidanServer:
    """``python -m nidan serve`` on 127.0.0.1; stopped with its whole process group, whatever happened.

    With ``python_path`` (a tree's ``src``), that directory comes first on the server's ``PYTHONPATH`` (ahead of
    the venv's editable install of this checkout) and the server names the nidan it imported on its log's first
    line (``nidan_file``): how ``bench/side_by_side.py`` runs an older commit with the same venv."""

    def __init__(self, env: dict[str, str], workers: int, log_dir: Path, python_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = env if python_path is None else {**env, "PYTHONPATH": str(python_path)}
        self.log_path = log_dir / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        program = ["-m", "nidan"] if python_path is None else ["-c", LAUNCHER]
        command = [sys.executable, *program, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [*command, "--workers", str(workers)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        self.pgid = self.process.pid  # a new session: its leader's pid is the group id

    def __enter__(self) -> NidanServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nidan serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200 and len(self.workers_now()) >= self.workers:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"nidan serve was not healthy within {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def nidan_file(self) -> Path | None:
        """Where the server's nidan package was imported from (servers started with a ``python_path`` only)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith(NIDAN_FILE_MARK):
                return Path(line.removeprefix(NIDAN_FILE_MARK)).resolve()
        return None

    def workers_now(self) -> list[ProcessInfo]:
        """The processes that serve requests: the server itself with one worker, else its children that are
        uvicorn workers (not multiprocessing's helpers, which use next to no CPU)."""
        processes = group_processes(self.pgid)
        if self.workers == 1:
            return [p for p in processes if p.pid == self.pgid]
        return [p for p in processes if p.ppid == self.pgid and _is_worker(p.pid)]

    def cpu_seconds(self) -> float:
        """utime+stime of every live process in the server's group."""
        return sum(p.cpu_seconds for p in group_processes(self.pgid))

    def peak_rss(self) -> list[float]:
        return [rss for p in self.workers_now() if (rss := peak_rss_mib(p.pid)) is not None]

    def stop(self) -> None:
        stop_group(self.process, self.pgid)
        self._log.close()


def stop_group(process: subprocess.Popen[bytes], pgid: int) -> None:
    """SIGTERM the server's process group, SIGKILL it when it does not end in time; any process of the group that
    outlived the leader (a worker stuck in shutdown) goes too."""
    if process.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
            process.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _is_worker(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"resource_tracker" not in command
