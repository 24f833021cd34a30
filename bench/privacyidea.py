"""privacyIDEA 3.14 as the benchmark peer: its own venv, configured at its best, seeded with the same TOTP keys as
nidan, served by gunicorn, and driven by the same wrk script (``wrk/verify.lua`` with ``BENCH_TARGET=privacyidea``).

``run_peer`` is what the matrix runner calls; run this file alone to try it (``.venv/bin/python bench/privacyidea.py
--users 5000 --duration 10 --workers 2``). privacyIDEA never touches nidan's venv: it lives in
``bench/.work/privacyidea-venv`` (made with the system's Python 3.11, re-used while it holds privacyIDEA 3.14).

Its best configuration: as ``/work/shared/peers/privacyidea.md`` found it, SQLite in WAL mode (its default rollback
journal halves its throughput), audit and response signing off (nidan signs neither), no token PIN (a PIN costs an
argon2id at 64 MiB per check), ``DefaultMaxFailCount`` raised so wrong-code runs lock no token, logging at WARNING;
and, found here, SQLite with synchronous=NORMAL (as nidan runs it), one pooled engine per process instead of a new
audit engine per request (``PI_ENGINE_REGISTRY_CLASS = "shared"``), 3.14's internal metrics off (a write per request
to one hot row), and its user cache on and warm (the passwd-file resolver re-parses its whole file in every request;
see SEED_HELPER). Measured here, one at a time: synchronous=NORMAL 37 -> 27 ms a valid check (one process), the
shared engine 69 -> 37 ms, metrics off 13 -> 41 valid req/s with 2 workers, the warm user cache 217 -> 25 ms a check
with 20,000 users.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from loadgen import record_of, run_wrk, write_valid_codes, write_wrong_codes
from serving import free_port, group_processes, peak_rss_mib, stop_group

from nidan.core.totp import hotp

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
VENV = WORK / "privacyidea-venv"
SCRIPT = BENCH / "wrk" / "verify.lua"
REQUIREMENTS = ["privacyidea==3.14.*", "gunicorn"]
VERSION_PREFIX = "3.14"
#: The Python the venv is made with: privacyIDEA 3.14 wants >= 3.10; 3.11 is what this machine kind ships.
PYTHONS = ["python3.11", "/usr/bin/python3.11", "python3"]

REALM = "bench"
RESOLVER = "benchusers"
FIRST_UID = 10_000
#: A wrong code raises a token's fail counter; at maxfail the token locks and every later check fails.
MAX_FAIL_COUNT = 1_000_000
#: privacyIDEA's default TOTP window, in steps either side: timeWindow 180 s / 30 s.
PEER_WINDOW_STEPS = 6
#: privacyIDEA's user cache lifetime: longer than any run (see SEED_HELPER for why the cache is on).
USER_CACHE_SECONDS = 86_400
LOG_LEVEL_WARNING = 30
INSTALL_TIMEOUT = 900
STEP_TIMEOUT = 300
START_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
SCENARIOS = ("valid", "wrong")

#: Seeds the realm, the user cache and the tokens inside privacyIDEA (run by the peer venv's python with a JSON
#: settings file, in one app context).
#:
#: Tokens: enrolling through ``init_token`` costs 20-37 ms a token here (about a dozen commits, each with its ORM
#: round trips), so 20,000 users would take 6-12 minutes. The first user's token is enrolled by ``init_token`` exactly
#: as ``POST /token/init`` does it; every other token is a copy of the rows it wrote (token, tokeninfo, tokenowner,
#: tokenrealm) with its own serial, owner and key, the key encrypted by the function ``Token.set_otpkey`` uses. A few
#: copies are read back through privacyIDEA's own user resolution, token lookup and key decryption.
#:
#: User cache: the passwd-file resolver re-reads and parses its whole file in every request (its resolver object lives
#: in the request's store), about 10 µs a line here: 217 ms a check with 20,000 users against 25 ms with the cache. A
#: production server resolves users from LDAP or SQL, and privacyIDEA's answer to a slow user store is its user cache
#: (``UserCacheExpiration``), which a running server fills as users sign in. The seeding turns it on and fills it with
#: the rows ``add_to_cache`` writes (as if every user had signed in once), so a check's cost does not grow with the
#: number of users: privacyIDEA at its best, as nidan, which looks its users up in its own database.
SEED_HELPER = '''\
"""Seeds privacyIDEA for nidan's benchmark (written and run by bench/privacyidea.py)."""

import datetime
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from privacyidea.app import create_app
from privacyidea.lib.config import set_privacyidea_config
from privacyidea.lib.crypto import encrypt, geturandom, hexlify_and_unicode
from privacyidea.lib.realm import set_default_realm, set_realm
from privacyidea.lib.resolver import save_resolver
from privacyidea.lib.token import get_tokens, init_token
from privacyidea.lib.user import User
from privacyidea.models import Token, TokenInfo, TokenOwner, TokenRealm, UserCache, db

BATCH = 5000
CHECKED = 20

User_ = tuple[str, str, str]  # username, uid, hex key


def serial(name: str) -> str:
    return "BENCH" + name


def enroll_params(name: str, hex_key: str) -> dict[str, Any]:
    # What POST /token/init gets: TOTP, SHA1, 6 digits, 30 s, the key given (genkey=0), no PIN.
    return {"type": "totp", "serial": serial(name), "otpkey": hex_key, "genkey": 0, "otplen": 6,
            "hashlib": "sha1", "timeStep": 30}


def insert_batches(table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        db.session.execute(insert(table), rows[start : start + BATCH])


def fill_user_cache(users: list[User_], resolver: str) -> None:
    now = datetime.datetime.now()  # naive local time, as add_to_cache stamps its rows
    rows = [{"username": name, "used_login": name, "resolver": resolver, "user_id": uid, "timestamp": now}
            for name, uid, _key in users]
    insert_batches(UserCache.__table__, rows)
    db.session.commit()


def rows_of(table: Any, token_id: int) -> list[dict[str, Any]]:
    """The template token's rows in ``table``, without their own ids (the database gives the copies theirs)."""
    column = table.c.id if table is Token.__table__ else table.c.token_id
    rows = db.session.execute(select(table).where(column == token_id)).mappings()
    return [{k: v for k, v in row.items() if k != "id"} for row in rows]


def copy_tokens(template_id: int, users: list[User_]) -> None:
    token = rows_of(Token.__table__, template_id)[0]
    infos = rows_of(TokenInfo.__table__, template_id)
    owner = rows_of(TokenOwner.__table__, template_id)[0]
    realm = rows_of(TokenRealm.__table__, template_id)[0]
    next_id = db.session.execute(select(func.max(Token.__table__.c.id))).scalar_one() + 1
    tokens, token_infos, owners, realms = [], [], [], []
    for offset, (name, uid, hex_key) in enumerate(users):
        token_id = next_id + offset
        iv = geturandom(16)
        tokens.append({**token, "id": token_id, "serial": serial(name), "key_enc": encrypt(hex_key, iv),
                       "key_iv": hexlify_and_unicode(iv)})
        token_infos += [{**info, "token_id": token_id} for info in infos]
        owners.append({**owner, "token_id": token_id, "user_id": uid})
        realms.append({**realm, "token_id": token_id})
    insert_batches(Token.__table__, tokens)
    insert_batches(TokenInfo.__table__, token_infos)
    insert_batches(TokenOwner.__table__, owners)
    insert_batches(TokenRealm.__table__, realms)
    db.session.commit()


def check(users: list[User_], realm: str) -> None:
    # pi.cfg's connection class reached the engine: 1 is NORMAL (2, FULL, is SQLite's default).
    if db.session.execute(text("PRAGMA synchronous")).scalar_one() != 1:
        raise SystemExit("pi.cfg's SQLite connection class was not used")
    for name, uid, hex_key in random.sample(users, min(CHECKED, len(users))):
        user = User(name, realm)
        tokens = get_tokens(user=user)
        if user.uid != uid or len(tokens) != 1 or tokens[0].token.get_otpkey().getKey() != hex_key.encode():
            raise SystemExit(f"the seeded token of {name} does not read back")


def main() -> None:
    settings = json.loads(Path(sys.argv[1]).read_text())
    realm, resolver = settings["realm"], settings["resolver"]
    users = [tuple(line.split()) for line in Path(settings["keys"]).read_text().splitlines() if line]
    started = time.monotonic()
    app = create_app(config_name="production", config_file=settings["config"], silent=True)
    with app.app_context():
        save_resolver({"resolver": resolver, "type": "passwdresolver", "fileName": settings["passwd"]})
        set_realm(realm, [{"name": resolver}])
        set_default_realm(realm)
        # Before enrolling: a token takes its maxfail from it when created.
        set_privacyidea_config("DefaultMaxFailCount", settings["max_fail_count"])
        set_privacyidea_config("UserCacheExpiration", settings["user_cache_seconds"])
        fill_user_cache(users, resolver)
        configured = time.monotonic()
        name, _uid, hex_key = users[0]
        template = init_token(enroll_params(name, hex_key), user=User(name, realm))
        enrolled = time.monotonic()
        copy_tokens(template.token.id, users[1:])
        copied = time.monotonic()
        check(users, realm)
    print(json.dumps({"realm_and_user_cache": configured - started, "init_token": enrolled - configured,
                      "token_copies": copied - enrolled, "read_back": time.monotonic() - copied}))


main()
'''


@dataclass(frozen=True)
class Prepared:
    """A configured, seeded privacyIDEA in a work directory."""

    config: Path
    database: Path
    log: Path
    seconds: dict[str, float]


# --- the venv ------------------------------------------------------------------------------------------------------


def venv_python() -> Path:
    return VENV / "bin" / "python"


def installed_version() -> str | None:
    """privacyIDEA's version in the peer venv, or None when the venv is missing, broken, or lacks gunicorn."""
    if not venv_python().exists():
        return None
    probe = "import importlib.metadata as m; m.version('gunicorn'); print(m.version('privacyidea'))"
    done = subprocess.run(  # noqa: S603 - the peer venv's python with a fixed probe
        [str(venv_python()), "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def system_python() -> str:
    for candidate in PYTHONS:
        found = shutil.which(candidate)
        if found is not None:
            return found
    raise RuntimeError(f"no system Python found (tried {', '.join(PYTHONS)})")


def ensure_venv() -> str:
    """The peer venv with privacyIDEA 3.14 and gunicorn, made once and re-used; returns privacyIDEA's version."""
    version = installed_version()
    if version is not None and version.startswith(VERSION_PREFIX):
        return version
    print(f"==> installing {' '.join(REQUIREMENTS)} into {VENV}", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([system_python(), "-m", "venv", str(VENV)], check=True, timeout=STEP_TIMEOUT)  # noqa: S603
    subprocess.run(  # noqa: S603 - pip of our own venv with fixed requirements
        [str(venv_python()), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True, timeout=INSTALL_TIMEOUT
    )
    version = installed_version()
    if version is None or not version.startswith(VERSION_PREFIX):
        raise RuntimeError(f"privacyIDEA {VERSION_PREFIX} did not install into {VENV} (found {version})")
    return version


# --- configuration and seeding -------------------------------------------------------------------------------------


#: pi.cfg is Python (Flask's ``from_pyfile``; only upper-case names become settings). SQLite's ``synchronous`` is a
#: per-connection setting that no URL parameter reaches, so a connection class sets it; privacyIDEA hands
#: SQLALCHEMY_ENGINE_OPTIONS to its main engine and, without PI_AUDIT_SQL_OPTIONS, to the audit engine too.
SQLITE_CONNECTION = """\
import sqlite3 as _sqlite3


class _BenchConnection(_sqlite3.Connection):
    \"\"\"WAL (set on the file) with synchronous=NORMAL: what nidan runs SQLite with.\"\"\"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA synchronous=NORMAL")


SQLALCHEMY_ENGINE_OPTIONS = {"connect_args": {"factory": _BenchConnection}}
"""


def config_text(work_dir: Path) -> str:
    """pi.cfg: every path in ``work_dir``, fresh secrets, signing off, WARNING to a file, pooled engines, SQLite
    with synchronous=NORMAL."""
    values: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work_dir / 'privacyidea.sqlite'}",
        "SECRET_KEY": secrets.token_hex(32),
        "PI_PEPPER": secrets.token_hex(16),
        "PI_ENCFILE": str(work_dir / "enckey"),
        "PI_AUDIT_KEY_PRIVATE": str(work_dir / "audit-private.pem"),
        "PI_AUDIT_KEY_PUBLIC": str(work_dir / "audit-public.pem"),
        "PI_AUDIT_NO_SIGN": True,
        "PI_NO_RESPONSE_SIGN": True,
        "PI_LOGFILE": str(work_dir / "privacyidea.log"),
        "PI_LOGLEVEL": LOG_LEVEL_WARNING,
        # Else it reads /etc/privacyidea/logging.cfg (when there is one) and /etc/machine-id.
        "PI_LOGCONFIG": str(work_dir / "no-logging.cfg"),
        "PI_NODE_UUID": str(uuid.uuid4()),
        "PI_NODE": "bench",
        "PI_BASE_URL": "http://127.0.0.1",  # only used in links it sends; unset, it warns at every start
        # The default ("null") builds a new audit engine, and so a new database connection, in every request;
        # "shared" keeps one pooled engine per process, as privacyIDEA's docs advise for production.
        "PI_ENGINE_REGISTRY_CLASS": "shared",
        # 3.14's internal metrics add a write per request to one row per node and 5-minute window (its own kill
        # switch turns them off, like signing: work nidan does not do).
        "PI_NO_INTERNAL_METRICS": True,
    }
    return "".join(f"{key} = {value!r}\n" for key, value in values.items()) + "\n" + SQLITE_CONNECTION


def peer_env(config: Path) -> dict[str, str]:
    """The environment of every privacyIDEA process: pi-manage reads its config file from PRIVACYIDEA_CONFIGFILE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRIVACYIDEA", "PI_", "VIRTUAL_ENV"))}
    env.pop("DATABASE_URL", None)  # ProductionConfig would take it
    env.update(PRIVACYIDEA_CONFIGFILE=str(config), PYTHONUNBUFFERED="1")
    return env


def run_step(command: list[str], config: Path, log: Path) -> str:
    """One setup command of the peer venv; its output goes to ``log``; fails loudly."""
    done = subprocess.run(  # noqa: S603 - programs of the peer venv with our own arguments
        command,
        capture_output=True,
        text=True,
        env=peer_env(config),
        cwd=config.parent,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}); see {log}:\n{done.stderr[-2000:]}")
    return done.stdout


def pi_manage(config: Path, log: Path, *args: str) -> None:
    run_step([str(VENV / "bin" / "pi-manage"), *args], config, log)


def enable_wal(database: Path) -> str:
    """WAL is a property of the database file: set once, every later connection uses it."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        mode: str = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise RuntimeError(f"{database}: journal_mode is {mode}, not wal")
    return mode


def write_users(work_dir: Path, keys: dict[str, bytes]) -> tuple[Path, Path]:
    """The passwd file the resolver reads, and ``username uid hexkey`` lines for the seeding helper."""
    passwd = work_dir / "users.passwd"
    key_lines = work_dir / "users.keys"
    with passwd.open("w") as users, key_lines.open("w") as seeds:
        for index, (name, key) in enumerate(keys.items()):
            uid = FIRST_UID + index
            users.write(f"{name}:x:{uid}:{FIRST_UID}:{name}:/nonexistent:/usr/sbin/nologin\n")
            seeds.write(f"{name} {uid} {key.hex()}\n")
    return passwd, key_lines


def seed_tokens(work_dir: Path, config: Path, keys: dict[str, bytes], log: Path) -> dict[str, float]:
    """The realm, the user cache and one token per user, by SEED_HELPER in the peer venv; returns its timings."""
    passwd, key_lines = write_users(work_dir, keys)
    helper = work_dir / "seed_privacyidea.py"
    helper.write_text(SEED_HELPER)
    settings = work_dir / "seed_privacyidea.json"
    settings.write_text(
        json.dumps(
            {
                "config": str(config),
                "passwd": str(passwd),
                "keys": str(key_lines),
                "realm": REALM,
                "resolver": RESOLVER,
                "max_fail_count": MAX_FAIL_COUNT,
                "user_cache_seconds": USER_CACHE_SECONDS,
            }
        )
    )
    output = run_step([str(venv_python()), str(helper), str(settings)], config, log)
    timings: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return timings


def prepare(work_dir: Path, keys: dict[str, bytes]) -> Prepared:
    """A fresh privacyIDEA in ``work_dir``: config, keys, tables (WAL), an admin, the realm and one token per user."""
    if not keys:
        raise ValueError("no users to seed")
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "pi.cfg"
    if config.exists():
        raise RuntimeError(f"{work_dir} already holds a privacyIDEA; give it an empty directory")
    config.write_text(config_text(work_dir))
    log = work_dir / "setup.log"
    seconds: dict[str, float] = {}
    started = time.monotonic()
    pi_manage(config, log, "setup", "create_enckey")
    pi_manage(config, log, "setup", "create_audit_keys")
    pi_manage(config, log, "setup", "create_tables")
    database = work_dir / "privacyidea.sqlite"
    enable_wal(database)
    # Not used by the bench (it seeds through the library), but a working instance has one.
    pi_manage(config, log, "admin", "add", "admin", "--password", secrets.token_urlsafe(16))
    seconds["pi_manage"] = time.monotonic() - started
    seeded = time.monotonic()
    seconds.update(seed_tokens(work_dir, config, keys, log))
    seconds["users_and_tokens"] = time.monotonic() - seeded
    seconds["total"] = time.monotonic() - started
    return Prepared(config=config, database=database, log=work_dir / "privacyidea.log", seconds=seconds)


# --- the server ----------------------------------------------------------------------------------------------------

#: gunicorn's own config: a worker writes a file once it has loaded the app, so the bench knows when every worker
#: (not just the first) is ready; gunicorn loads the app after forking, one worker at a time.
GUNICORN_CONFIG = """\
import os

READY = {ready!r}


def post_worker_init(worker):
    open(os.path.join(READY, str(worker.pid)), "w").close()
"""


class PrivacyIdeaServer:
    """gunicorn serving privacyIDEA on 127.0.0.1 in its own process group; the group is killed whatever happened."""

    def __init__(self, prepared: Prepared, workers: int, work_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.ready_dir = work_dir / f"ready-{self.port}"
        self.ready_dir.mkdir()
        gunicorn_config = work_dir / "gunicorn.conf.py"
        gunicorn_config.write_text(GUNICORN_CONFIG.format(ready=str(self.ready_dir)))
        self.log_path = work_dir / f"gunicorn-{self.port}.log"
        self._log = self.log_path.open("w")
        factory = f"privacyidea.app:create_app(config_name='production', config_file='{prepared.config}')"
        command = [str(VENV / "bin" / "gunicorn"), "-c", str(gunicorn_config), "-w", str(workers)]
        command += ["-b", f"127.0.0.1:{self.port}", "--log-level", "warning", factory]
        self.process = subprocess.Popen(  # noqa: S603 - the peer venv's gunicorn with our own arguments
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=peer_env(prepared.config),
            cwd=work_dir,
            start_new_session=True,
        )
        self.pgid = self.process.pid  # a new session: its leader's pid is the group id

    def __enter__(self) -> PrivacyIdeaServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the master's children."""
        return [p.pid for p in group_processes(self.pgid) if p.ppid == self.pgid]

    def ready_workers(self) -> int:
        live = set(self.worker_pids())
        return sum(1 for marker in self.ready_dir.iterdir() if int(marker.name) in live)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz/livez", timeout=2) as answer:  # noqa: S310 - loopback
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.tail()}")
            if self.ready_workers() >= self.workers and self.answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"privacyIDEA was not ready within {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """utime+stime of every live process in the server's group (master and workers)."""
        return sum(p.cpu_seconds for p in group_processes(self.pgid))

    def peak_rss(self) -> list[float]:
        return [rss for pid in self.worker_pids() if (rss := peak_rss_mib(pid)) is not None]

    def stop(self) -> None:
        stop_group(self.process, self.pgid)
        self._log.close()


# --- the scenarios -------------------------------------------------------------------------------------------------


def drop_ambiguous_codes(path: Path, keys: dict[str, bytes]) -> int:
    """Blank out (``-``) every code in a valid-codes file that equals another step's code within privacyIDEA's
    window; returns how many.

    loadgen leaves out codes equal to a neighbour's within 3 steps (nidan's window and drift). privacyIDEA compares a
    code with steps now-6 .. now+5 (its default 180 s ``timeWindow``) and takes the lowest step that matches: a code
    equal to an earlier, already used step's would be refused as a replay, a wrong answer that is no data point.
    """
    lines = path.read_text().splitlines()
    base = int(lines[0].removeprefix("# base "))
    rows = [lines[0]]
    dropped = 0
    for line in lines[1:]:
        name, *codes = line.split()
        first = base - PEER_WINDOW_STEPS
        around = [hotp(keys[name], step) for step in range(first, base + len(codes) + PEER_WINDOW_STEPS)]
        for k, code in enumerate(codes):
            at = k + PEER_WINDOW_STEPS
            if (
                code != "-"
                and code in around[at - PEER_WINDOW_STEPS : at] + around[at + 1 : at + 1 + PEER_WINDOW_STEPS]
            ):
                codes[k] = "-"
                dropped += 1
        rows.append(" ".join([name, *codes]))
    path.write_text("\n".join(rows) + "\n")
    return dropped


def run_scenario(
    name: str,
    server: PrivacyIdeaServer,
    keys: dict[str, bytes],
    work_dir: Path,
    *,
    threads: int,
    connections: int,
    duration: int,
) -> dict[str, Any]:
    bodies = work_dir / f"{name}.bodies"
    if name == "valid":
        write_valid_codes(bodies, keys, duration)
        drop_ambiguous_codes(bodies, keys)
    else:
        write_wrong_codes(bodies, keys, duration)
    cpu_before = server.cpu_seconds()
    result = run_wrk(
        url=server.url,
        mode=name,
        bodies=bodies,
        api_key="",  # /validate/check takes no credentials
        threads=threads,
        connections=connections,
        duration=duration,
        log=work_dir / f"{name}.wrk.log",
        script=SCRIPT,
        extra_env={"BENCH_TARGET": "privacyidea"},
    )
    return record_of(name, result, server.cpu_seconds() - cpu_before)


def run_peer(
    work_dir: Path,
    keys: dict[str, bytes],
    *,
    workers: int,
    scenarios: list[str],
    threads: int,
    connections: int,
    duration: int,
) -> dict[str, Any]:
    """privacyIDEA 3.14 on SQLite (WAL) with ``workers`` gunicorn workers, seeded with ``keys`` (username -> raw
    TOTP key), through each of ``scenarios`` ("valid", "wrong") with wrk. Scratch files go to a new directory
    ``work_dir/privacyidea-*`` (so several calls, or nidan's files, can share ``work_dir``)."""
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; choose from {SCENARIOS}")
    version = ensure_venv()
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"privacyidea-{workers}w-", dir=work_dir))
    print(f"==> privacyIDEA {version}: seeding {len(keys)} users in {work_dir}", flush=True)
    prepared = prepare(work_dir, keys)
    breakdown = ", ".join(f"{k} {v:.1f} s" for k, v in prepared.seconds.items())
    print(f"    {breakdown}", flush=True)
    results = []
    with PrivacyIdeaServer(prepared, workers, work_dir) as server:
        server.wait_until_ready()
        print(f"==> privacyIDEA on {server.url}, {workers} gunicorn worker(s); log {server.log_path}", flush=True)
        for name in scenarios:
            print(f"==> privacyIDEA, {name} codes: {duration} s", flush=True)
            results.append(
                run_scenario(name, server, keys, work_dir, threads=threads, connections=connections, duration=duration)
            )
            last = results[-1]
            print(f"    {last['rps']:.0f} req/s, p99 {last['latency_ms']['p99']:.1f} ms", flush=True)
            time.sleep(1)
        peak_rss = [round(x, 1) for x in server.peak_rss()]
    return {
        "system": "privacyidea",
        "version": version,
        "workers": workers,
        "backend": "sqlite",
        "config": {
            "server": f"gunicorn {workers} sync worker(s)",
            "journal_mode": "wal",
            "synchronous": "normal",
            "PI_ENGINE_REGISTRY_CLASS": "shared",
            "PI_NO_INTERNAL_METRICS": True,
            "PI_AUDIT_NO_SIGN": True,
            "PI_NO_RESPONSE_SIGN": True,
            "PI_LOGLEVEL": "WARNING",
            "DefaultMaxFailCount": MAX_FAIL_COUNT,
            "token": "TOTP, SHA1, 6 digits, 30 s, no PIN, default timeWindow 180 s",
            "resolver": "passwdresolver (a passwd file)",
            "UserCacheExpiration": USER_CACHE_SECONDS,
            "user_cache": "filled at seeding, as if every user had signed in once",
            "request": "POST /validate/check, form user=&pass=",
        },
        "seed_seconds": round(prepared.seconds["total"], 1),
        "peak_rss_mib_per_worker": peak_rss,
        "scenarios": results,
    }


# --- alone ---------------------------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="users seeded with TOTP (default 20000)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario (default 20)")
    parser.add_argument("--scenarios", default="valid,wrong", help="comma-separated: valid, wrong (default both)")
    return parser.parse_args()


def table(report: dict[str, Any]) -> str:
    rss = " / ".join(f"{x:.0f}" for x in report["peak_rss_mib_per_worker"]) or "?"
    lines = [
        f"privacyIDEA {report['version']}, {report['backend']}, {report['workers']} worker(s), "
        f"seeded in {report['seed_seconds']} s",
        "",
        "| scenario | req/s | p50 ms | p90 ms | p99 ms | errors | CPU ms/req | peak RSS MiB/worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["scenarios"]:
        lat = s["latency_ms"]
        errors = s["errors"] + s["exhausted"] + s["throttled_429"] + sum(s["socket_errors"].values())
        lines.append(
            f"| {s['scenario']} | {s['rps']:.1f} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | "
            f"{errors} | {s['cpu_ms_per_request']} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments()
    if shutil.which("wrk") is None:
        print("wrk is not installed (bench/run installs it)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    keys = {f"u{i:07d}": os.urandom(20) for i in range(args.users)}
    work_dir = WORK / f"privacyidea-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    report = run_peer(
        work_dir,
        keys,
        workers=args.workers,
        scenarios=names,
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
    )
    (work_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print(f"written: {(work_dir / 'report.json').relative_to(BENCH.parent)}")
    failed = False
    for s in report["scenarios"]:
        for failure in s["failures"]:
            failed = True
            print(f"FAILED {s['scenario']}: {failure}", file=sys.stderr)
        for sample in s["error_samples"]:
            print(f"    status, body: {sample}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
