"""Git over HTTP behind nidan, with real programs: nginx (its ``auth_request`` asks nidan's ``/auth/basic``),
fcgiwrap running ``git http-backend``, and the ``git`` command line, all on 127.0.0.1 in a temporary directory.

nginx runs the configuration the documentation gives admins (``docs/examples/nginx-git.conf``), with its
placeholders filled in; only the few top-level lines that put pid, logs and temporary files in the test's directory
are the test's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.support import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = REPOSITORY_ROOT / "docs" / "examples" / "nginx-git.conf"
GIT_HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
START_TIMEOUT = 30.0
GIT_TIMEOUT = 60.0

#: What GitLab answers a Git client whose password or token was refused; nidan answers the same, word for word.
ACCESS_DENIED = (
    "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect or "
    "you're required to use a token instead of a password. If a token was provided, it was either incorrect, "
    "expired, or improperly scoped."
)

#: Records who pushed, as git-http-backend's hooks see it: REMOTE_USER, and whether a credential leaked into them.
POST_RECEIVE_HOOK = """#!/bin/sh
printf 'REMOTE_USER=%s\\nHTTP_AUTHORIZATION=%s\\n' "$REMOTE_USER" "$HTTP_AUTHORIZATION" >> "$GIT_DIR/pushed-by"
"""


def require(program: str, package: str) -> str:
    """The program's path; a missing client is a failure that names the Debian package, never a skip."""
    path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        pytest.fail(
            f"{program} is not installed: the Git-over-HTTP test needs the real program "
            f"(Debian/Ubuntu: apt-get install {package}; scripts/test installs it)"
        )
    return path


def require_programs() -> dict[str, str]:
    programs = {
        "nginx": require("nginx", "nginx"),
        "fcgiwrap": require("fcgiwrap", "fcgiwrap"),
        "git": require("git", "git"),
    }
    if not GIT_HTTP_BACKEND.exists():
        pytest.fail(f"{GIT_HTTP_BACKEND} is missing (Debian/Ubuntu: apt-get install git; scripts/test installs it)")
    return programs


def render_nginx_config(*, listen: str, server_name: str, nidan: str, fcgiwrap_socket: Path, git_root: Path) -> str:
    """The documented configuration with its placeholders filled in; every placeholder must be used."""
    text = NGINX_TEMPLATE.read_text()
    values = {
        "@LISTEN@": listen,
        "@SERVER_NAME@": server_name,
        "@NIDAN@": nidan,
        "@FCGIWRAP_SOCKET@": str(fcgiwrap_socket),
        "@GIT_PROJECT_ROOT@": str(git_root),
    }
    for placeholder, value in values.items():
        assert placeholder in text, f"{placeholder} is not in {NGINX_TEMPLATE}"
        text = text.replace(placeholder, value)
    leftover = [word for word in text.split() if word.startswith("@") and word.rstrip(";").endswith("@")]
    assert not leftover, f"placeholders the test does not fill in: {leftover}"
    return text


def nginx_main_config(directory: Path, site: Path) -> str:
    """The test's own top level: one process as the invoking user, everything inside ``directory``."""
    temp = directory / "temp"
    return f"""
daemon off;
master_process off;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""


def git_environment(home: Path) -> dict[str, str]:
    """A clean environment for ``git``: no user or system configuration, no askpass, no prompt, no proxy."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Author",
        "GIT_COMMITTER_EMAIL": "author@example.com",
    }


def run_git(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "credential.helper=", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=GIT_TIMEOUT,
    )


def git_ok(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = run_git(env, *args, cwd=cwd)
    assert result.returncode == 0, f"git {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
    return result.stdout


def wait_for(check_ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}\n{tail(log)}")
        if check_ready():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not come up in {START_TIMEOUT} s\n{tail(log)}")


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (fcgiwrap's children and the git they run included), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class GitHttp:
    """nginx + fcgiwrap in front of one bare repository, asking the nidan at ``nidan_address`` about every request."""

    directory: Path
    nidan_address: str
    repository_name: str = "project.git"
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def git_root(self) -> Path:
        return self.directory / "repositories"

    @property
    def bare(self) -> Path:
        return self.git_root / self.repository_name

    @property
    def error_log(self) -> Path:
        return self.directory / "nginx" / "error.log"

    @property
    def fcgiwrap_log(self) -> Path:
        return self.directory / "fcgiwrap.log"

    def url(self, username: str, secret: str) -> str:
        credentials = f"{quote(username, safe='')}:{quote(secret, safe='')}"
        return f"http://{credentials}@127.0.0.1:{self.port}/{self.repository_name}"

    def start(self, programs: dict[str, str], git_env: dict[str, str]) -> None:
        self._create_repository(git_env)
        socket_path = self.directory / "fcgiwrap.sock"
        with self.fcgiwrap_log.open("wb") as log:
            fcgiwrap = subprocess.Popen(
                [programs["fcgiwrap"], "-f", "-c", "2", "-s", f"unix:{socket_path}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(fcgiwrap)
        wait_for(socket_path.exists, fcgiwrap, "fcgiwrap", self.fcgiwrap_log)

        nginx_dir = self.directory / "nginx"
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (nginx_dir / "temp" / name).mkdir(parents=True, exist_ok=True)
        site = nginx_dir / "git.conf"
        site.write_text(
            render_nginx_config(
                listen=f"127.0.0.1:{self.port}",
                server_name="127.0.0.1",
                nidan=self.nidan_address,
                fcgiwrap_socket=socket_path,
                git_root=self.git_root,
            )
        )
        main = nginx_dir / "nginx.conf"
        main.write_text(nginx_main_config(nginx_dir, site))
        with (nginx_dir / "stderr.log").open("wb") as log:
            nginx = subprocess.Popen(
                [programs["nginx"], "-p", str(nginx_dir), "-c", str(main), "-e", str(self.error_log)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(nginx)
        wait_for(lambda: port_answers(self.port), nginx, "nginx", self.error_log)

    def _create_repository(self, git_env: dict[str, str]) -> None:
        self.git_root.mkdir(parents=True)
        git_ok(git_env, "init", "--bare", "--quiet", str(self.bare))
        seed = self.directory / "seed"
        git_ok(git_env, "init", "--quiet", str(seed))
        (seed / "README").write_text("nidan guards this repository\n")
        git_ok(git_env, "add", "README", cwd=seed)
        git_ok(git_env, "commit", "--quiet", "-m", "Initial commit", cwd=seed)
        git_ok(git_env, "push", "--quiet", str(self.bare), "main", cwd=seed)
        hook = self.bare / "hooks" / "post-receive"  # after the seed: it records pushes over HTTP only
        hook.write_text(POST_RECEIVE_HOOK)
        hook.chmod(0o755)

    def head(self, git_env: dict[str, str]) -> str:
        return git_ok(git_env, "--git-dir", str(self.bare), "rev-parse", "refs/heads/main").strip()

    def pushed_by(self) -> str:
        path = self.bare / "pushed-by"
        return path.read_text() if path.exists() else ""

    def describe(self) -> str:
        return "\n".join([tail(self.error_log), tail(self.directory / "nginx" / "access.log"), tail(self.fcgiwrap_log)])

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)
