"""``nidan keys rotate`` on a real database (SQLite and PostgreSQL): a new primary key, every secret re-sealed in
batches while the server's runtime keeps serving, the old key retired; stopped midway or crashed inside a batch,
it continues when run again; users sign in throughout and afterwards."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from nidan.bootstrap import Runtime, build_maintenance, build_runtime
from nidan.config import Settings
from nidan.core.models import Method
from nidan.db import tables as t
from nidan.errors import AuthenticationRequired, InvalidCode
from nidan.services import enrollment, signin
from nidan.services import keys as rotation
from tests.conftest import FixedClock
from tests.helpers import PASSWORD, code_at, make_user
from tests.integration.backup_support import (
    CLIENT,
    Invoke,
    Population,
    assert_refused,
    cli_for,
    enable_totp,
    populate,
    sign_in_with_totp,
)


@pytest.fixture
def population(runtime: Runtime) -> Population:
    return populate(runtime.services, totp_users=3)  # alice, user1, user2 with apps; bob with a pending one


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def sealed_by(runtime: Runtime) -> dict[str, int]:
    c = t.totp_credentials.c
    with runtime.engine.connect() as connection:
        rows = connection.execute(select(c.key_fingerprint)).scalars().all()
    counts: dict[str, int] = {}
    for name in rows:
        counts[name] = counts.get(name, 0) + 1
    return counts


def primary_of(settings: Settings) -> str:
    return (settings.resolved_keys_dir / "primary").read_text().strip()


def everyone_signs_in(runtime: Runtime, population: Population) -> None:
    for username, secret in population.secrets.items():
        assert sign_in_with_totp(runtime.services, username, secret).user.username == username


def test_rotation_stopped_after_one_batch_continues_and_users_sign_in(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke, clock: FixedClock
) -> None:
    keys_dir = settings.resolved_keys_dir
    old = primary_of(settings)

    first = nidan("keys", "rotate", "--batch-size", "1", "--max-batches", "1")
    assert first.exit_code == 0, first.output
    new = primary_of(settings)
    assert new != old
    assert f"New primary sealing key {new}." in first.stdout
    assert "Stopped as asked; still to do: 3 secrets under " + old in first.stdout
    assert sealed_by(runtime) == {new: 1, old: 3}
    assert (keys_dir / f"seal-{old}.key").exists()  # still named: not retired
    # Midway, the server keeps serving: the rows under either key open.
    everyone_signs_in(runtime, population)

    second = nidan("keys", "rotate", "--batch-size", "2")
    assert second.exit_code == 0, second.output
    assert f"Continuing the unfinished rotation to key {new}." in second.stdout
    assert "Re-sealed 3 secrets" in second.stdout
    assert f"Retired key {old}" in second.stdout
    assert primary_of(settings) == new  # no third key
    assert sealed_by(runtime) == {new: 4}
    assert sorted(p.name for p in keys_dir.glob("seal-*.key")) == [f"seal-{new}.key"]
    assert (keys_dir / "retired" / f"seal-{old}.key").exists()

    # A process started now holds the new key ring, and everyone signs in with the same apps as before.
    fresh = build_runtime(settings, clock=clock)
    try:
        everyone_signs_in(fresh, population)
    finally:
        fresh.engine.dispose()

    listed = nidan("keys", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["FINGERPRINT", "STATE", "TOTP", "SECRETS"]
    assert lines[1].split() == [new, "primary", "4"]
    assert lines[2].split() == [old, "retired", "0"]


def test_a_process_started_before_the_rotation_keeps_signing_people_in(
    runtime: Runtime, population: Population, nidan: Invoke
) -> None:
    """The running runtime was built with the old key only; after the re-seal it finds the new key file by the
    fingerprint the rows name (same key directory), instead of failing every code."""
    assert nidan("keys", "rotate").exit_code == 0
    everyone_signs_in(runtime, population)


def test_crash_inside_a_batch_leaves_whole_batches_and_a_rerun_finishes(
    runtime: Runtime, population: Population, settings: Settings, clock: FixedClock
) -> None:
    maintenance = build_maintenance(settings, clock=clock)
    try:
        calls = 0

        def dies_in_the_second_batch(n: int) -> bytes:
            nonlocal calls
            calls += 1
            if calls == 4:  # batches of 2: the second row of the second batch
                raise KeyboardInterrupt("killed")
            return os.urandom(n)

        crashing = replace(maintenance.services, random_bytes=dies_in_the_second_batch)
        with pytest.raises(KeyboardInterrupt):
            rotation.rotate(crashing, batch_size=2)
        new = primary_of(settings)
        counts = sealed_by(runtime)
        assert counts[new] == 2  # the first batch committed, the second rolled back whole
        assert sum(counts.values()) == 4
        everyone_signs_in(runtime, population)

        again = rotation.rotate(maintenance.services, batch_size=2)
        assert again.prepared is None and again.progress.finished
        assert sealed_by(runtime) == {new: 4}
    finally:
        maintenance.engine.dispose()
    everyone_signs_in(runtime, population)


def test_resealing_does_not_undo_a_sign_in_made_meanwhile(
    runtime: Runtime, population: Population, settings: Settings, clock: FixedClock
) -> None:
    """A code used between two batches stays used: the re-seal changes only the sealed secret and its key name."""
    ctx = runtime.services
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    code = code_at(population.secrets["user2"], ctx)
    maintenance = build_maintenance(settings, clock=clock)
    used: list[str] = []

    def sign_in_between_batches(progress: rotation.ResealProgress) -> None:
        if progress.batches == 1:
            started = signin.login(ctx, username="user2", password=PASSWORD, client=CLIENT)
            assert isinstance(started, signin.MfaRequired)
            signin.complete_mfa(ctx, mfa_token=started.mfa_token, method=Method.TOTP, code=code, client=CLIENT)
            used.append(code)

    try:
        rotation.rotate(maintenance.services, batch_size=1, on_batch=sign_in_between_batches)
    finally:
        maintenance.engine.dispose()
    assert used == [code]
    started = signin.login(ctx, username="user2", password=PASSWORD, client=CLIENT)
    assert isinstance(started, signin.MfaRequired)
    with pytest.raises(InvalidCode):  # the replay is still refused
        signin.complete_mfa(ctx, mfa_token=started.mfa_token, method=Method.TOTP, code=code, client=CLIENT)


def test_prepare_then_reseal_for_several_processes(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke, clock: FixedClock
) -> None:
    old = primary_of(settings)
    prepared = nidan("keys", "rotate", "--prepare")
    assert prepared.exit_code == 0, prepared.output
    new = primary_of(settings)
    assert new != old
    assert f"copy seal-{new}.key and `primary` into every host's key directory" in prepared.stdout
    assert sealed_by(runtime) == {old: 4}  # nothing re-sealed yet

    again = nidan("keys", "rotate", "--prepare")
    assert "finish it with `nidan keys rotate --reseal`" in assert_refused(again, "key_rotation_conflict")

    # A process restarted after --prepare seals new secrets under the new key.
    restarted = build_runtime(settings, clock=clock)
    try:
        carol = make_user(restarted.services, "carol")
        enable_totp(restarted.services, carol, population)
        assert sealed_by(runtime) == {old: 4, new: 1}
    finally:
        restarted.engine.dispose()

    resealed = nidan("keys", "rotate", "--reseal")
    assert resealed.exit_code == 0, resealed.output
    assert "Re-sealed 4 secrets" in resealed.stdout and f"Retired key {old}" in resealed.stdout
    assert sealed_by(runtime) == {new: 5}
    everyone_signs_in(runtime, population)

    both = nidan("keys", "rotate", "--prepare", "--reseal")
    assert_refused(both, "invalid_request")


def test_a_stale_process_sealing_with_the_retired_key_is_caught_up(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke, clock: FixedClock
) -> None:
    old = primary_of(settings)
    assert nidan("keys", "rotate").exit_code == 0
    new = primary_of(settings)
    # ``runtime`` started before the rotation: it still seals with the old (now retired) key.
    dave = make_user(runtime.services, "dave")
    enable_totp(runtime.services, dave, population)
    assert sealed_by(runtime) == {new: 4, old: 1}

    fresh = build_runtime(settings, clock=clock)  # a restart is not refused: the retired key is still loaded
    try:
        assert sign_in_with_totp(fresh.services, "dave", population.secrets["dave"]).user.username == "dave"
    finally:
        fresh.engine.dispose()

    again = nidan("keys", "rotate")
    assert again.exit_code == 0, again.output
    assert f"Continuing the unfinished rotation to key {new}." in again.stdout
    assert sealed_by(runtime) == {new: 5}
    everyone_signs_in(runtime, population)


def test_rotate_hash_ends_every_session(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke, clock: FixedClock
) -> None:
    keys_dir = settings.resolved_keys_dir
    before = (keys_dir / "hash.key").read_bytes()
    declined = nidan("keys", "rotate-hash", input="n\n")
    assert declined.exit_code == 1 and (keys_dir / "hash.key").read_bytes() == before

    result = nidan("keys", "rotate-hash", "--yes")
    assert result.exit_code == 0, result.output
    assert (keys_dir / "hash.key").read_bytes() != before
    assert [p.read_bytes() for p in (keys_dir / "retired").glob("hash-*.key")] == [before]
    fresh = build_runtime(settings, clock=clock)
    try:
        with pytest.raises(AuthenticationRequired):
            signin.current_session(fresh.services, population.sessions["bob"])
        everyone_signs_in(fresh, population)  # TOTP secrets are sealed, not hashed: unaffected
    finally:
        fresh.engine.dispose()


def test_keys_list_names_a_missing_key(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke
) -> None:
    old = primary_of(settings)
    (settings.resolved_keys_dir / f"seal-{old}.key").unlink()
    result = nidan("keys", "list")
    assert result.exit_code == 1
    assert [old, "missing", "4"] in [line.split() for line in result.stdout.splitlines()]
    assert f"Missing: seal-{old}.key seals 4 secrets; restore it from backup." in result.stdout
    # Rotation refuses to start without it: it could not re-seal what that key sealed.
    assert f"seal-{old}.key" in assert_refused(nidan("keys", "rotate"), "key_missing", exit_code=2)


def test_pending_enrolment_is_resealed_and_still_activates(
    runtime: Runtime, population: Population, nidan: Invoke
) -> None:
    ctx = runtime.services
    erin = make_user(ctx, "erin")
    started = enrollment.start_totp(ctx, erin)
    assert nidan("keys", "rotate").exit_code == 0
    activation = enrollment.activate_totp(ctx, erin, code_at(started.secret, ctx), client=CLIENT)
    assert len(activation.recovery_codes) == 16
