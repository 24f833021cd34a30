"""Keys live in files, never in the database; a missing key is reported by name, not as a wrong code."""

from __future__ import annotations

import stat

import pytest

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import Settings
from nidan.core.models import ClientInfo
from nidan.errors import KeyMissing
from nidan.services import enrollment
from tests.helpers import code_at, make_user


def test_key_files_are_private(runtime: Runtime, settings: Settings) -> None:
    keys_dir = settings.resolved_keys_dir
    files = sorted(p.name for p in keys_dir.iterdir())
    assert "hash.key" in files and "primary" in files and any(f.startswith("seal-") for f in files)
    for path in keys_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_sealed_secret_is_not_stored_in_plain(runtime: Runtime) -> None:
    ctx = runtime.services
    user = make_user(ctx)
    started = enrollment.start_totp(ctx, user)
    with ctx.uow() as uow:
        pending = uow.totp.get_pending(user.id)
    assert pending is not None
    from nidan.core.otpauth import b32decode

    assert b32decode(started.secret) not in pending.sealed_secret
    assert pending.key_fingerprint == ctx.keyring.primary


def test_start_refuses_when_sealed_data_names_a_missing_key(runtime: Runtime, settings: Settings) -> None:
    ctx = runtime.services
    user = make_user(ctx)
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=ClientInfo())
    runtime.engine.dispose()
    seal_file = next(settings.resolved_keys_dir.glob("seal-*.key"))
    seal_file.unlink()
    (settings.resolved_keys_dir / "primary").unlink()
    with pytest.raises(KeyMissing) as raised:
        build_runtime(settings)
    fingerprint = seal_file.stem.removeprefix("seal-")
    assert fingerprint in raised.value.message
    assert "backup" in raised.value.message
