"""Property-based fuzzing of the whole OpenAPI document: whatever a client sends, the answer is the one documented.

schemathesis generates requests for every operation in ``/openapi.json`` (schema-valid ones and ones that break
the schema) and sends them to the ASGI app in process. Every operation is fuzzed on every back end of the suite
(SQLite always, PostgreSQL when ``NIDAN_TEST_DATABASE_URL`` names one), each operation against its own copy of a
seeded instance, so what one operation does (end a session, remove an application) never reaches another.

Who calls: each operation's declared ``security`` decides. ``session`` operations are called with a signed-in
member's session (alice, with an authenticator app, a personal access token, recovery codes and a remembered
browser), the admin paths
with an instance administrator's session verified within the step-up window (root, with an authenticator app);
``applicationKey`` (``/api/v1/verify``) with a registered application's key; ``basic`` (``/auth/basic``) with
alice's personal access token. Before every example the harness checks those credentials still work (a database
read) and signs in again only when an example ended them (a sign-out, say), so no operation is left out for being
destructive.

What is asserted for every response (``CHECKS``):

* no 5xx (``not_a_server_error``);
* the status code, the content type, the body and the headers are the documented ones (``status_code_conformance``,
  ``content_type_conformance``, ``response_schema_conformance``, ``response_headers_conformance``);
* schema-valid input is not refused with 422 (``positive_data_acceptance``), except where the operation documents
  a rule JSON Schema cannot state (``DYNAMIC_RULES``: each names the operation and the error it may answer);
* input that breaks the schema is refused (``negative_data_rejection``, ``missing_required_header``): a number as
  ``until``, a count past a column's range;
* an operation that declares security refuses a call without it or with made-up credentials (``ignored_auth``);
* a method the path does not have is 405 with ``Allow`` naming the path's methods (``unsupported_method``);
* every error answer (4xx, 5xx) has the body ``{"error": {"code", "message", "correlation_id", "timestamp"}}``
  with the same id in ``X-Correlation-ID``; every answer carries that header; the Basic gate's 401 is GitLab's exact
  text with ``WWW-Authenticate: Basic`` (``nidan_error_contract``).

Left out, and why:

* ``unsupported_method`` on ``/auth/basic``, ``/auth/basic/denied`` and ``/auth/basic/blocked``: they answer every
  method alike on purpose (proxies send the client's own method on the subrequest; see ``nidan.web.forward_auth``),
  so an undeclared method there is answered, not refused with 405. Every other path is checked.
* the stateful phase and the checks that need it (``use_after_free``, ``ensure_resource_availability``,
  ``object_level_authorization``): they follow links between operations, which the document does not declare.
  Each operation still starts from a seeded instance with real users, tokens, an organisation and an application.
* ``max_response_time``: a deadline per example (``DEADLINE``) stands in for it; timings on a shared 2-core machine
  are no contract.

Names the services read as people type them (usernames by PRECIS, RFC 8265, and application names: full-width
forms mapped and case folded; organisation short names lower-cased; spaces around dropped) document their canonical
spelling as the pattern: an equivalent spelling (``WIKI``) is accepted as the same name, which is why the patterns
are stated and not enforced. A username's pattern states its alphabet; the rest of the rule (scripts, symbols,
unassigned code points) is in the description and in ``DYNAMIC_RULES``.

Generated as a client could send it: strings are UTF-8 (a lone surrogate is no character JSON text can carry), and
no unknown query parameters (ignored, as by nearly every HTTP API; OpenAPI does not forbid them).

Bounded so the suite stays quick: ``EXAMPLES`` generated examples per operation (plus the document's examples and
the coverage phase's boundary cases), a deadline per example, no shrinking, and a fixed seed so a failure comes back
on the next run. ``NIDAN_FUZZ_EXAMPLES`` and ``NIDAN_FUZZ_SEED`` widen or vary a run by hand. No example database is
kept, and Hypothesis's caches go to a temporary directory. A failure prints the request as a ``curl`` command line
(credentials shown as ``[Filtered]``: they belong to that run's throwaway instance anyway).

Run it alone: ``.venv/bin/pytest -q -p no:cacheprovider tests/web/test_openapi_fuzz.py`` (add
``NIDAN_TEST_DATABASE_URL=postgresql+psycopg://root@127.0.0.1:5432/test`` for PostgreSQL too).
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario
from schemathesis.specs.openapi import checks as openapi_checks

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import PolicySettings, SecuritySettings, ServerSettings, Settings
from nidan.core import totp
from nidan.core.access_tokens import Scope, TokenKind
from nidan.core.models import ClientInfo, InstanceRole, Method, OrgRole
from nidan.errors import BASIC_AUTH_DENIED_MESSAGE, NidanError
from nidan.services import accounts, applications, devices, enrollment, organisations, signin, throttling, tokens
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.conftest import BACKENDS, FAST_SECURITY, START, FixedClock, PostgresDatabases
from tests.helpers import PASSWORD, code_at, make_user

#: Hypothesis keeps caches (Unicode tables, constants from the source) where its example database would be: in a
#: temporary directory, not in the work tree. No example database is kept at all (``database=None``).
_HYPOTHESIS_HOME = Path(tempfile.mkdtemp(prefix="nidan-fuzz-hypothesis-"))
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
set_hypothesis_home_dir(_HYPOTHESIS_HOME)

EXAMPLES = int(os.environ.get("NIDAN_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("NIDAN_FUZZ_SEED", "14"))
#: Per example, generous for a loaded 2-core machine: a hang, not a slow moment, is what it catches.
DEADLINE = timedelta(seconds=10)
#: Re-sign-ins come from an address of their own, so what the fuzzer's wrong passwords count never blocks them.
HARNESS = ClientInfo(ip="192.0.2.1", user_agent="fuzz harness")

MEMBER = "alice"
ADMIN = "root"
TARGET = "bob"
ORGANISATION = "platform-team"
APPLICATION = "wiki"


def _settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        server=ServerSettings(),
        security=SecuritySettings(**FAST_SECURITY),
        policy=PolicySettings(remember_device_days=30),
    )


def _load_schema() -> schemathesis.BaseSchema:
    """The document as the app serves it, read once at collection from an app on a throwaway SQLite instance."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        runtime = build_runtime(_settings(data, f"sqlite:///{data / 'nidan.db'}"))
        try:
            document = create_app(runtime=runtime).openapi()
        finally:
            runtime.engine.dispose()
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "database": "none",
                "no-shrink": True,
                # JSON text is UTF-8 (RFC 8259): a lone surrogate is no character a client can send.
                "codec": "utf-8",
                # Unknown query parameters are ignored, as by nearly every HTTP API; OpenAPI does not forbid them.
                "allow-extra-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )
    loaded = schemathesis.openapi.from_dict(document, config=config)
    # In process, as ``schemathesis.openapi.from_asgi`` would have it; the app is each operation's own (CURRENT).
    loaded.app = CURRENT
    return loaded


class CurrentApp:
    """The ASGI app schemathesis calls: it forwards to the app of the operation under test. schemathesis keeps one
    application for a schema, and every operation here runs against its own instance. The lifespan is answered
    here (the instances' background work, SQLite's WAL checkpoints, is no part of what is tested)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "no operation under test"
        await self.app(scope, receive, send)


CURRENT = CurrentApp()
schema = _load_schema()


# --- the seeded instance, made once per back end and copied for every operation ------------------------------------


@dataclass(frozen=True)
class Seed:
    """A seeded instance: its data directory (keys, and the SQLite file), its database, and the secrets handed out."""

    data_dir: Path
    database_url: str
    clock_at: datetime
    member_secret: str
    admin_secret: str
    member_session: str
    admin_session: str
    member_token: str
    app_key: str


def _sign_in(ctx: ServiceContext, clock: FixedClock, username: str, secret: str) -> str:
    """A full session, verified now: the password, then (when the user has one) a fresh authenticator code."""
    result = signin.login(ctx, username=username, password=PASSWORD, client=HARNESS)
    if isinstance(result, signin.MfaRequired):
        clock.advance(totp.PERIOD)  # a code's time step works once: the next one
        code = code_at(secret, ctx)
        result = signin.complete_mfa(ctx, mfa_token=result.mfa_token, method=Method.TOTP, code=code, client=HARNESS)
    assert isinstance(result, signin.Authenticated), f"{username} cannot sign in: {result!r}"
    return result.session_token


def _with_totp(ctx: ServiceContext, clock: FixedClock, username: str) -> str:
    found = accounts.find_user(ctx, username)
    started = enrollment.start_totp(ctx, found)
    enrollment.activate_totp(ctx, found, code_at(started.secret, ctx), client=HARNESS)
    clock.advance(totp.PERIOD)
    return started.secret


def _seed(runtime: Runtime, clock: FixedClock, data_dir: Path, database_url: str) -> Seed:
    ctx = runtime.services
    admin = make_user(ctx, ADMIN, role=InstanceRole.ADMIN)
    member = make_user(ctx, MEMBER)
    target = make_user(ctx, TARGET)
    admin_secret = _with_totp(ctx, clock, ADMIN)
    member_secret = _with_totp(ctx, clock, MEMBER)
    organisations.create(ctx, slug=ORGANISATION, name="Platform team", actor=admin, client=HARNESS)
    for user in (member, target):
        organisations.add_member(
            ctx, ORGANISATION, username=user.username, role=OrgRole.MEMBER, managed=True, actor=admin, client=HARNESS
        )
    token = tokens.create(
        ctx,
        member,
        kind=TokenKind.PERSONAL,
        name="laptop git",
        scopes=[s.value for s in Scope],
        expires_on=None,
        client=HARNESS,
    )
    app_key = applications.add(ctx, name=APPLICATION, actor=admin, client=HARNESS).api_key
    with ctx.uow() as uow:  # alice's remembered browser: id 1, the document's example
        assert devices.remember(ctx, uow, member, HARNESS) is not None
        uow.commit()
    admin_session = _sign_in(ctx, clock, ADMIN, admin_secret)
    member_session = _sign_in(ctx, clock, MEMBER, member_secret)
    return Seed(
        data_dir=data_dir,
        database_url=database_url,
        clock_at=clock.now(),
        member_secret=member_secret,
        admin_secret=admin_secret,
        member_session=member_session,
        admin_session=admin_session,
        member_token=token.secret,
        app_key=app_key,
    )


@pytest.fixture(scope="session", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Seed]:
    data_dir = tmp_path_factory.mktemp(f"fuzz-seed-{request.param}") / "data"
    data_dir.mkdir()
    name = None
    if request.param == "sqlite":
        shutil.copy(sqlite_template, data_dir / "nidan.db")
        database_url = f"sqlite:///{data_dir / 'nidan.db'}"
    else:
        assert postgres is not None
        name = postgres.create()
        database_url = postgres.url_for(name)
    clock = FixedClock(START)
    runtime = build_runtime(_settings(data_dir, database_url), clock=clock)
    try:
        seed = _seed(runtime, clock, data_dir, database_url)
    finally:
        runtime.engine.dispose()
    yield seed
    if name is not None:
        assert postgres is not None
        postgres.drop(name)


# --- one operation's world: a copy of the seed, the app, and credentials kept working -------------------------------


class World:
    """The app on a fresh copy of the seeded instance, and the credentials each kind of caller sends."""

    def __init__(self, runtime: Runtime, clock: FixedClock, seed: Seed) -> None:
        self.runtime = runtime
        self.clock = clock
        self.seed = seed
        self.app = create_app(runtime=runtime)
        self.member_session = seed.member_session
        self.admin_session = seed.admin_session
        #: The operation under test, and whether an example of it reached its work (a 2xx) or failed a check.
        self.operation: str | None = None
        self.reached = False
        self.failed = False

    @property
    def ctx(self) -> ServiceContext:
        return self.runtime.services

    def _working(self, token: str) -> bool:
        try:
            signin.require_recent_verification(self.ctx, signin.full_session(self.ctx, token))
        except NidanError:
            return False
        return True

    def _fresh(self, token: str, username: str, secret: str) -> str:
        """``token`` while it still opens a recently verified session; else a new sign-in (after lifting any block
        the fuzzer's wrong codes caused: the harness is not what is being tested)."""
        if self._working(token):
            return token
        throttling.clear(self.ctx, username=username, actor=None, client=HARNESS, reason="fuzz harness")
        return _sign_in(self.ctx, self.clock, username, secret)

    def authorization(self, case: schemathesis.Case) -> str | None:
        """The ``Authorization`` header the operation's declared security asks for, or ``None`` for none."""
        schemes = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
        if "applicationKey" in schemes:
            return f"Bearer {self.seed.app_key}"
        if "basic" in schemes:
            pair = f"{MEMBER}:{self.seed.member_token}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if "session" in schemes:
            if case.path.startswith("/api/v1/admin"):
                self.admin_session = self._fresh(self.admin_session, ADMIN, self.seed.admin_secret)
                return f"Bearer {self.admin_session}"
            self.member_session = self._fresh(self.member_session, MEMBER, self.seed.member_secret)
            return f"Bearer {self.member_session}"
        return None


@pytest.fixture
def world(seeded: Seed, tmp_path: Path, postgres: PostgresDatabases | None) -> Iterator[World]:
    data_dir = tmp_path / "data"
    shutil.copytree(seeded.data_dir, data_dir)
    name = None
    if seeded.database_url.startswith("sqlite"):
        database_url = f"sqlite:///{data_dir / 'nidan.db'}"
    else:
        assert postgres is not None
        template = seeded.database_url.rsplit("/", 1)[1]
        name = postgres.create(template)
        database_url = postgres.url_for(name)
    clock = FixedClock(seeded.clock_at)
    runtime = build_runtime(_settings(data_dir, database_url), clock=clock)
    world = World(runtime, clock, seeded)
    CURRENT.app = world.app
    yield world
    CURRENT.app = None
    runtime.engine.dispose()
    if name is not None:
        assert postgres is not None
        postgres.drop(name)
    if world.operation is not None and world.operation not in NEVER_REACHED and not world.failed:
        # A run that never got past the credentials or the look-up would pass every check and test nothing.
        assert world.reached, f"{world.operation}: no example was answered 2xx; the fuzzing never reached its work"


# --- what every answer must be -----------------------------------------------------------------------------------

#: Operations with a documented rule JSON Schema cannot state (each is in the operation's or the field's
#: description): schema-valid input may be refused with 422 for that rule, recognised by its error code and the
#: start of its message (``""``: any message of that code).
_INVISIBLE_REASON = ("invalid_request", "Give the reason in at most")
_TOKEN_RULES = (
    ("invalid_request", "The expiry date must be in the future"),  # a date after today
    ("invalid_request", "Tokens may live at most"),  # the instance's longest lifetime
    ("invalid_request", "The name may not contain control characters."),  # invisible characters
)
DYNAMIC_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "POST /api/v1/me/tokens": _TOKEN_RULES,
    "POST /api/v1/me/app-passwords": _TOKEN_RULES,
    "GET /api/v1/admin/events": (
        ("invalid_request", "'since' must be earlier than 'until'."),
        # PRECIS (RFC 8265) and the script rules need the Unicode database: the `username` filter's description.
        ("invalid_request", "A username"),
    ),
    "POST /api/v1/admin/orgs": (("invalid_request", "An organisation's name may not contain control characters."),),
    "PUT /api/v1/admin/orgs/{slug}/policy": (("tolerance_above_instance", ""),),  # the instance's own setting
    "DELETE /api/v1/admin/users/{username}/block": (_INVISIBLE_REASON,),
    "DELETE /api/v1/admin/users/{username}/tokens": (_INVISIBLE_REASON,),
    "POST /api/v1/admin/users/{username}/mfa/reset": (_INVISIBLE_REASON,),
    "POST /api/v1/admin/users/{username}/mfa/require-registration": (_INVISIBLE_REASON,),
    "DELETE /api/v1/admin/users/{username}/devices": (_INVISIBLE_REASON,),
    "POST /api/v1/admin/users/{username}/disable": (_INVISIBLE_REASON,),
    "POST /api/v1/admin/users/{username}/enable": (_INVISIBLE_REASON,),
    "DELETE /api/v1/admin/users/{username}": (_INVISIBLE_REASON,),
    # PRECIS (RFC 8265) and the script rules need the Unicode database: the `username` field's description.
    "POST /api/v1/admin/users": (("invalid_request", "A username"),),
    # The tz database of the server decides which names are zones.
    "PUT /api/v1/me/preferences": (("invalid_request", "That is not a time zone nidan knows"),),
    # The new password may not be the current one, a common one or contain the username (the field says so).
    "POST /api/v1/me/password": (("weak_password", ""),),
}

#: Operations no generated example can carry through, and why; every other one must answer 2xx at least once per
#: run (the examples in the document name the seeded user, organisation, application and token).
NEVER_REACHED = {
    "POST /api/v1/auth/login": "the seeded users' passwords are not in the document",
    "POST /api/v1/auth/mfa": "an mfa_token comes only from a sign-in with the password",
    "POST /api/v1/auth/reauth": "a step-up needs the password or a current code",
    "POST /api/v1/me/totp/activate": "activation needs the code of an authenticator just started",
    "DELETE /api/v1/admin/users/{username}/mfa": "the unenroll needs the administrator's own current code",
    "POST /api/v1/me/password": "a change needs the current password, which is not in the document",
    "GET /auth/basic/denied": "it always answers 401, by design",
    "GET /auth/basic/blocked": "it always answers 403, by design",
}

ERROR_FIELDS = {"code", "message", "correlation_id", "timestamp"}


@schemathesis.check
def nidan_error_contract(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every answer carries ``X-Correlation-ID``; every error answer the one error body with that id, except the
    Basic gate's plain-text answers, whose 401 is GitLab's exact text."""
    correlation_id = response.headers.get("x-correlation-id")
    assert correlation_id, "no X-Correlation-ID header"
    status = response.status_code
    if case.path.startswith("/auth/basic") and status in (401, 403):
        if status == 401:
            assert response.text == BASIC_AUTH_DENIED_MESSAGE + "\n", f"not GitLab's text: {response.text!r}"
            assert response.headers.get("www-authenticate") == ['Basic realm="nidan"']
        return None
    if status < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not the error body: {response.text!r}"
    error = body["error"]
    missing = ERROR_FIELDS - error.keys()
    assert not missing, f"the error body lacks {sorted(missing)}: {response.text!r}"
    assert error["correlation_id"] == correlation_id[0], "the body's correlation_id is not the header's"
    assert datetime.fromisoformat(error["timestamp"]).utcoffset() is not None, "the timestamp has no UTC offset"
    return None


@schemathesis.check
def positive_data_accepted(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """``positive_data_acceptance``, but a documented dynamic rule's 422 is an answer, not a contradiction."""
    if response.status_code == 422:
        error = response.json().get("error", {})
        for code, message in DYNAMIC_RULES.get(case.operation.label, ()):
            if error.get("code") == code and str(error.get("message", "")).startswith(message):
                return None
    return openapi_checks.positive_data_acceptance(ctx, response, case)


@schemathesis.check
def undeclared_methods_refused(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """``unsupported_method`` (405 with ``Allow``), but the Basic gate's paths answer every method alike on
    purpose: proxies send the client's own method on the subrequest, and anything but 2xx, 401 and 403 would become
    a 500 for the client (``nidan.web.forward_auth``)."""
    if case.path.startswith("/auth/basic"):
        return None
    return openapi_checks.unsupported_method(ctx, response, case)


CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    undeclared_methods_refused,
    positive_data_accepted,
    openapi_checks.negative_data_rejection,
    openapi_checks.missing_required_header,
    openapi_checks.ignored_auth,
    nidan_error_contract,
]


@schema.parametrize()
@hypothesis.settings(deadline=DEADLINE, database=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_answer_is_the_documented_one(case: schemathesis.Case, world: World) -> None:
    # Sent as explicit headers, not as part of the case: schemathesis then knows they are real credentials, and its
    # ``ignored_auth`` check tries the same request without them and with made-up ones.
    authorization = None if _leaves_out_credentials(case) else world.authorization(case)
    headers = {"Authorization": authorization} if authorization is not None else None
    world.operation = case.operation.label
    try:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
    except BaseException:
        world.failed = True
        raise
    world.reached = world.reached or 200 <= response.status_code < 300


def _leaves_out_credentials(case: schemathesis.Case) -> bool:
    """A coverage case that tests the answer to a missing ``Authorization`` header (it must be 401)."""
    data = case.meta.phase.data if case.meta is not None else None
    return (
        isinstance(data, CoveragePhaseData)
        and data.scenario == CoverageScenario.MISSING_PARAMETER
        and (data.parameter or "").lower() == "authorization"
    )
