"""The OpenAPI document is the truth: what the fuzzing (test_openapi_fuzz.py) found, each as a plain regression test.

Numbers past what a column holds are refused, not crashed on; a body that is not UTF-8 is the documented 422;
every 405 names the methods in ``Allow``; ``/healthz`` errors are the JSON error body; the security schemes and each
operation's security are in the document; the constraints the services enforce are stated in it, and what JSON
Schema cannot state is in the descriptions.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole
from nidan.core.organisations import SLUG_PATTERN
from nidan.core.usernames import APPLICATION_NAME_PATTERN, USERNAME_PATTERN
from tests.helpers import auth_header, login, make_user
from tests.web.api_support import assert_error

INT8_MAX = 2**63 - 1
INT4_MAX = 2**31 - 1


def signed_in(client: TestClient, runtime: Runtime, username: str, role: InstanceRole = InstanceRole.MEMBER) -> Any:
    make_user(runtime.services, username, role=role)
    return auth_header(login(client, username)["session_token"])


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def parameter(spec: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in spec["paths"][path][method]["parameters"] if p["name"] == name)
    return found


def branches(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema is ``anyOf [the type, null]``: the type's branch."""
    return next((b for b in schema.get("anyOf", []) if b.get("type") != "null"), schema)


# --- numbers past a column's range: 422, never 500 -------------------------------------------------------------------


def test_a_page_cursor_past_int8_is_refused_not_crashed(client: TestClient, runtime: Runtime) -> None:
    """``seq`` is a BIGINT: 2**63 overflowed SQLite's driver and PostgreSQL's bigint (500) before it was bounded."""
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    make_user(runtime.services, "bob")
    for path in ("/api/v1/me/events", "/api/v1/admin/events", "/api/v1/admin/users/bob/events"):
        assert_error(client.get(path, params={"before": INT8_MAX + 1}, headers=admin), 422, "invalid_request")
        largest = client.get(path, params={"before": INT8_MAX}, headers=admin)
        assert largest.status_code == 200, (path, largest.text)


def test_integer_parameters_state_their_bounds(spec: dict[str, Any]) -> None:
    for path in ("/api/v1/me/events", "/api/v1/admin/events", "/api/v1/admin/users/{username}/events"):
        before = branches(parameter(spec, path, "get", "before")["schema"])
        assert (before["minimum"], before["maximum"]) == (1, INT8_MAX), path
    token_id = parameter(spec, "/api/v1/me/tokens/{token_id}", "delete", "token_id")["schema"]
    assert (token_id["minimum"], token_id["maximum"]) == (1, INT4_MAX)
    policy = spec["components"]["schemas"]["PolicyRequest"]["properties"]
    assert policy["grace_period_days"]["maximum"] == 365
    assert branches(policy["tolerated_failures"])["maximum"] == 1000


def test_a_token_id_past_int4_is_refused(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime, "alice")
    assert_error(client.delete(f"/api/v1/me/tokens/{INT4_MAX + 1}", headers=headers), 422, "invalid_request")
    assert_error(client.delete(f"/api/v1/me/tokens/{INT4_MAX}", headers=headers), 404, "token_not_found")


def test_no_bound_is_written_in_a_keyword_json_schema_lacks(spec: dict[str, Any]) -> None:
    """pydantic writes bounds placed after a validator as ``ge``/``le``: tools would ignore them."""
    text = str(spec)
    assert "'ge':" not in text and "'le':" not in text


# --- JSON types as the document has them: no false for 0, no 0 for false, no number for a date ---------------------


def test_policy_numbers_are_json_integers(client: TestClient, runtime: Runtime) -> None:
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    assert client.post("/api/v1/admin/orgs", json={"slug": "team", "name": "Team"}, headers=admin).status_code == 201
    for refused in ({"grace_period_days": False}, {"grace_period_days": "3"}, {"tolerated_failures": True}):
        response = client.put(
            "/api/v1/admin/orgs/team/policy", json={"two_factor": "optional", **refused}, headers=admin
        )
        assert_error(response, 422, "invalid_request")
    # 3.0 is an integer to JSON Schema, and so to nidan.
    fine = client.put(
        "/api/v1/admin/orgs/team/policy", json={"two_factor": "optional", "grace_period_days": 3.0}, headers=admin
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["policy"]["grace_period_days"] == 3


def test_managed_is_a_json_boolean(client: TestClient, runtime: Runtime) -> None:
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    make_user(runtime.services, "bob")
    client.post("/api/v1/admin/orgs", json={"slug": "team", "name": "Team"}, headers=admin)
    for refused in (0, 1, "yes", "false"):
        response = client.put("/api/v1/admin/orgs/team/members/bob", json={"managed": refused}, headers=admin)
        assert_error(response, 422, "invalid_request")
    assert client.put("/api/v1/admin/orgs/team/members/bob", json={"managed": False}, headers=admin).status_code == 201


def test_an_expiry_date_is_text(client: TestClient, runtime: Runtime) -> None:
    """A number was read as seconds since 1970 (1798675200: 2026-12-31) though the document says a date."""
    headers = signed_in(client, runtime, "alice")
    body = {"name": "ci", "scopes": ["api"]}
    response = client.post("/api/v1/me/tokens", json={**body, "expires_at": 1798675200}, headers=headers)
    assert_error(response, 422, "invalid_request")
    made = client.post("/api/v1/me/tokens", json={**body, "expires_at": "2026-12-31"}, headers=headers)
    assert made.status_code == 201, made.text


# --- times: ISO 8601 text only, and within what UTC can hold ----------------------------------------------------------


@pytest.mark.parametrize("value", ["0.5", "1700000000", "yesterday", "0001-01-01T00:00:00+01:00"])
def test_a_time_filter_is_an_iso_date_and_time(client: TestClient, runtime: Runtime, value: str) -> None:
    """``date-time`` in the document: a number of seconds was taken as one (``until=0.5``), and a moment before
    year 1 in UTC overflowed in the database layer (500)."""
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    for name in ("since", "until"):
        response = client.get("/api/v1/admin/events", params={name: value}, headers=admin)
        assert_error(response, 422, "invalid_request")


def test_iso_times_with_and_without_an_offset_still_filter(client: TestClient, runtime: Runtime) -> None:
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    for value in ("2026-03-14T15:00:00", "2026-03-14T15:00:00Z", "2026-03-15T00:00:00+09:00"):
        response = client.get("/api/v1/admin/events", params={"since": value}, headers=admin)
        assert response.status_code == 200, (value, response.text)
    # The moment itself, read as UTC without an offset: the sign-in above happened at 15:09:26 UTC.
    after = client.get("/api/v1/admin/events", params={"since": "2026-03-14T15:10:00"}, headers=admin).json()
    assert after["events"] == []


# --- bodies that are not UTF-8 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/me/tokens"),
        ("POST", "/api/v1/admin/apps"),
        # Its 400 is Atlassian's body (with a top-level message): FastAPI's own 400 broke that documented shape.
        ("DELETE", "/api/v1/admin/users/bob/mfa"),
    ],
)
def test_a_body_that_is_not_utf8_is_the_documented_422(client: TestClient, method: str, path: str) -> None:
    response = client.request(
        method, path, content=b'{"name": "\xc3\x28"}', headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 422, "invalid_request")
    assert error["message"] == "The request body is not valid JSON."


# --- 405 names what the path allows; /healthz answers errors in JSON --------------------------------------------------


def test_every_405_names_every_method_of_the_path(client: TestClient) -> None:
    """One path may be served by several routes (POST and DELETE /api/v1/me/totp): ``Allow`` names them all."""
    for verb in ("TRACE", "PUT", "GET"):
        response = client.request(verb, "/api/v1/me/totp")
        assert_error(response, 405, "http_method_not_allowed")
        assert response.headers["allow"] == "DELETE, POST"
    assert client.request("TRACE", "/api/v1/me/events").headers["allow"] == "GET"
    assert client.request("TRACE", "/api/v1/verify").headers["allow"] == "POST"


def test_healthz_errors_are_the_json_error_body(client: TestClient) -> None:
    response = client.post("/healthz")
    assert_error(response, 405, "http_method_not_allowed")
    assert response.headers["allow"] == "GET"
    assert response.headers["content-type"] == "application/json"


# --- security in the document --------------------------------------------------------------------------------------


def test_the_document_names_its_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["session"] == schemes["session"] | {"type": "http", "scheme": "bearer"}
    assert schemes["applicationKey"] == schemes["applicationKey"] | {"type": "http", "scheme": "bearer"}
    assert schemes["basic"] == schemes["basic"] | {"type": "http", "scheme": "basic"}


def test_every_operation_says_who_may_call_it(spec: dict[str, Any]) -> None:
    """Derived from the route's own credentials dependency, so the document cannot call an operation open while it
    demands a session."""
    open_to_anyone = {
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/mfa", "post"),
        ("/auth/basic/denied", "get"),
        ("/auth/basic/blocked", "get"),
        ("/healthz", "get"),
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            security = operation["security"]
            if (path, method) in open_to_anyone:
                assert security == [], (path, method)
            elif path == "/api/v1/verify":
                assert security == [{"applicationKey": []}]
            elif path == "/auth/basic":
                assert security == [{"basic": []}]
            else:
                assert security == [{"session": []}], (path, method)


def test_what_the_document_calls_open_answers_without_credentials(client: TestClient) -> None:
    """And what it says needs a session answers 401 without one."""
    assert client.get("/api/v1/me").status_code == 401
    assert client.post("/api/v1/auth/logout").status_code == 401
    assert client.get("/healthz").status_code == 200


# --- constraints the services enforce, stated in the document ---------------------------------------------------------


def test_names_state_the_services_own_patterns(spec: dict[str, Any]) -> None:
    """One rule each, from nidan.core: the document states it, the service enforces it."""
    schemas = spec["components"]["schemas"]
    assert schemas["ApplicationRequest"]["properties"]["name"]["pattern"] == APPLICATION_NAME_PATTERN
    app_name = parameter(spec, "/api/v1/admin/apps/{name}", "delete", "name")["schema"]
    assert app_name["pattern"] == APPLICATION_NAME_PATTERN
    assert parameter(spec, "/api/v1/admin/events", "get", "username")["schema"]["pattern"] == USERNAME_PATTERN
    assert schemas["CreateRequest"]["properties"]["slug"]["pattern"] == SLUG_PATTERN


def test_the_username_rule_a_pattern_cannot_state_is_described(spec: dict[str, Any]) -> None:
    """PRECIS (RFC 8265) needs the Unicode database: the pattern states the alphabet, the description the rest."""
    username = parameter(spec, "/api/v1/admin/events", "get", "username")["schema"]
    assert "RFC 8265" in username["description"] and "422" in username["description"]
    assert "mixing scripts" in username["description"]
    pattern = re.compile(username["pattern"])
    assert pattern.match("田中") and pattern.match("tanaka.hiroshi")


def test_a_username_the_pattern_allows_but_the_rule_refuses_is_the_documented_422(
    client: TestClient, runtime: Runtime
) -> None:
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    assert re.match(USERNAME_PATTERN, "p\u0430ypal")
    response = client.get("/api/v1/admin/events", params={"username": "p\u0430ypal"}, headers=admin)
    assert_error(response, 422, "invalid_request")
    assert response.json()["error"]["message"].startswith("A username cannot mix letters of different scripts")
    for accepted in ("田中", "ＴＡＮＡＫＡ", "tanaka.hiroshi"):
        found = client.get("/api/v1/admin/events", params={"username": accepted}, headers=admin)
        assert found.status_code == 200, found.text


def test_canonical_patterns_still_accept_what_people_type(client: TestClient, runtime: Runtime) -> None:
    """The pattern is the spelling to send; the services still read ' Wiki ' as wiki, as they always did."""
    admin = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    added = client.post("/api/v1/admin/apps", json={"name": " Wiki "}, headers=admin)
    assert added.status_code == 201, added.text
    assert client.delete("/api/v1/admin/apps/WIKI", headers=admin).status_code == 204


@pytest.mark.parametrize(
    ("schema", "field"),
    [("TokenRequest", "name"), ("AppPasswordRequest", "name"), ("CreateRequest", "name"), ("ReasonRequest", "reason")],
)
def test_one_line_text_states_it(spec: dict[str, Any], schema: str, field: str) -> None:
    pattern = re.compile(spec["components"]["schemas"][schema]["properties"][field]["pattern"])
    assert pattern.match("laptop git") and pattern.match("ノートPC")
    for refused in ("two\nlines", "a\x00b", "\x85", "   ", ""):
        assert not pattern.match(refused), refused


def test_rules_a_schema_cannot_state_are_in_the_descriptions(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "not after today" in schemas["TokenRequest"]["properties"]["expires_at"]["description"]
    assert "422" in schemas["TokenRequest"]["properties"]["expires_at"]["description"]
    assert "`since` must be earlier than `until`" in spec["paths"]["/api/v1/admin/events"]["get"]["description"]
    assert "tolerance_above_instance" in str(schemas["PolicyRequest"]["properties"]["tolerated_failures"])
    assert schemas["PolicyRequest"]["properties"]["allowed_methods"]["contains"] == {"const": "totp"}
    assert "Invisible characters" in schemas["ReasonRequest"]["properties"]["reason"]["description"]


def test_step_up_states_which_secret_each_method_takes(spec: dict[str, Any], client: TestClient) -> None:
    """``password`` with ``password``, ``code`` with the code methods, never both: a oneOf by ``method`` in the
    document (it was a rule checked after a schema that allowed both)."""
    body = spec["paths"]["/api/v1/auth/reauth"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "method"
    variants = {ref["$ref"].rsplit("/", 1)[1] for ref in body["oneOf"]}
    schemas = spec["components"]["schemas"]
    assert variants == {"PasswordReauth", "CodeReauth"}
    assert schemas["PasswordReauth"]["required"] == ["method", "password"]
    assert schemas["CodeReauth"]["required"] == ["method", "code"]
    assert schemas["PasswordReauth"]["additionalProperties"] is schemas["CodeReauth"]["additionalProperties"] is False
