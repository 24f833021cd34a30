from tests.helpers import make_user, login, enable_totp, code_at, auth_header
def test_smoke(client, runtime):
    ctx = runtime.services
    make_user(ctx)
    body = login(client)
    assert body["status"] == "authenticated"
    secret, codes = enable_totp(client, ctx, body["session_token"])
    assert len(codes) == 16
    body = login(client, "ALICE")
    assert body["status"] == "mfa_required" and body["methods"] == ["totp", "recovery_code"]
    r = client.post("/api/v1/auth/mfa", json={"mfa_token": body["mfa_token"], "method": "totp", "code": code_at(secret, ctx)})
    assert r.status_code == 200, r.text
    me = client.get("/api/v1/me", headers=auth_header(r.json()["session_token"]))
    assert me.json()["two_factor"]["recovery_codes_remaining"] == 16, me.text
    bad = client.post("/api/v1/auth/login", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request", bad.text
    print(bad.json(), bad.headers)
