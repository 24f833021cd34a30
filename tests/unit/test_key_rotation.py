"""The re-sealing logic of ``nidan keys rotate`` against in-memory fakes of its ports: batches, the conditional
update that leaves a concurrently changed row alone, secrets that cannot be opened, stopping and resuming, and
retiring only keys nothing names."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from nidan.core.keys import KeyInventory
from nidan.core.models import TotpCredential
from nidan.core.sealing import KEY_BYTES, KeyRing, Sealed, fingerprint
from nidan.errors import KeyRotationConflict
from nidan.services import keys as rotation
from nidan.services.maintenance import MaintenanceContext
from nidan.services.methods.totp import totp_context

NOW = datetime(2026, 3, 14, tzinfo=UTC)


class FakeTotp:
    def __init__(self) -> None:
        self.rows: dict[int, TotpCredential] = {}
        self.next_id = 1
        #: Called with a row id just before its conditional update: a concurrent writer's chance to act.
        self.before_reseal: Callable[[int], None] | None = None

    def add(self, user_id: int, sealed: Sealed) -> int:
        row_id, self.next_id = self.next_id, self.next_id + 1
        self.rows[row_id] = TotpCredential(
            id=row_id,
            user_id=user_id,
            active=True,
            key_fingerprint=sealed.key_fingerprint,
            sealed_secret=sealed.blob,
            created_at=NOW,
            activated_at=NOW,
            last_used_step=None,
            drift_steps=0,
        )
        return row_id

    def count_by_key(self) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.key_fingerprint] = counts.get(row.key_fingerprint, 0) + 1
        return counts

    def sealed_elsewhere(self, key_fingerprint: str, *, after_id: int, limit: int) -> Sequence[TotpCredential]:
        found = [r for i, r in sorted(self.rows.items()) if i > after_id and r.key_fingerprint != key_fingerprint]
        return found[:limit]

    def reseal(self, credential_id: int, expected_key: str, sealed: Sealed) -> bool:
        if self.before_reseal is not None:
            self.before_reseal(credential_id)
        row = self.rows.get(credential_id)
        if row is None or row.key_fingerprint != expected_key:
            return False
        self.rows[credential_id] = replace(row, key_fingerprint=sealed.key_fingerprint, sealed_secret=sealed.blob)
        return True


class FakeUnitOfWork:
    def __init__(self, totp: FakeTotp, log: list[str]) -> None:
        self.totp = totp
        self._log = log

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def commit(self) -> None:
        self._log.append("commit")


class FakeKeys:
    location = "/keys"

    def __init__(self) -> None:
        first = os.urandom(KEY_BYTES)
        self.active: dict[str, bytes] = {fingerprint(first): first}
        self.retired: dict[str, bytes] = {}
        self.primary = fingerprint(first)

    def inventory(self) -> KeyInventory:
        return KeyInventory(
            location=self.location,
            exists=True,
            primary=self.primary,
            active=frozenset(self.active),
            retired=frozenset(self.retired),
            hash_key=True,
        )

    def load_ring(self) -> KeyRing:
        return KeyRing({**self.retired, **self.active}, self.primary)

    def add_sealing_key(self) -> str:
        key = os.urandom(KEY_BYTES)
        self.active[fingerprint(key)] = key
        return fingerprint(key)

    def set_primary(self, name: str) -> None:
        assert name in self.active
        self.primary = name

    def retire(self, name: str) -> None:
        self.retired[name] = self.active.pop(name)

    @contextlib.contextmanager
    def rotation_lock(self) -> Iterator[None]:
        yield


class FakeDatabase:
    def __init__(self) -> None:
        self.recorded: dict[str, str] = {}

    def replace_recorded_key(self, purpose: str, name: str, at: datetime) -> None:
        self.recorded[purpose] = name


class FakeClock:
    def now(self) -> datetime:
        return NOW


class World:
    def __init__(self) -> None:
        self.totp = FakeTotp()
        self.keys = FakeKeys()
        self.commits: list[str] = []
        self.secrets: dict[int, bytes] = {}  # row id → plain secret
        self.database = FakeDatabase()
        fakes: dict[str, Any] = {"archives": None, "clock_sync": None, "clock": FakeClock(), "database": self.database}
        self.ctx = MaintenanceContext(
            keys=self.keys,  # type: ignore[arg-type]
            uow=lambda: FakeUnitOfWork(self.totp, self.commits),  # type: ignore[arg-type,return-value]
            random_bytes=os.urandom,
            version="test",
            **fakes,
        )

    def enrol(self, user_id: int) -> int:
        secret = os.urandom(20)
        sealed = self.keys.load_ring().seal(secret, context=totp_context(user_id), random_bytes=os.urandom)
        row_id = self.totp.add(user_id, sealed)
        self.secrets[row_id] = secret
        return row_id

    def opens(self) -> bool:
        """Every row opens, under the current key directory, to the secret it was enrolled with."""
        ring = self.keys.load_ring()
        for row_id, row in self.totp.rows.items():
            sealed = Sealed(row.key_fingerprint, row.sealed_secret)
            if ring.unseal(sealed, context=totp_context(row.user_id)) != self.secrets[row_id]:
                return False
        return True


@pytest.fixture
def world() -> World:
    return World()


def test_rotation_reseals_everything_in_batches_and_retires_the_old_key(world: World) -> None:
    old = world.keys.primary
    for user_id in range(1, 8):
        world.enrol(user_id)
    seen: list[int] = []

    done = rotation.rotate(world.ctx, batch_size=3, on_batch=lambda p: seen.append(p.resealed))

    new = done.prepared
    assert new is not None and new != old and world.keys.primary == new
    assert done.progress.resealed == 7 and done.progress.batches == 3 and seen == [3, 6, 7]
    assert world.commits == ["commit"] * 3  # one transaction per batch
    assert done.progress.finished and done.progress.retired == (old,)
    assert set(world.totp.count_by_key()) == {new}
    assert old in world.keys.retired and old not in world.keys.active
    assert world.opens()
    assert world.database.recorded == {"primary": new}  # processes starting without the new key refuse
    # Each row got a fresh nonce: nothing sealed twice the same way.
    assert len({row.sealed_secret for row in world.totp.rows.values()}) == 7


def test_a_row_replaced_meanwhile_is_left_alone_and_its_successor_is_resealed(world: World) -> None:
    for user_id in range(1, 5):
        world.enrol(user_id)
    old = world.keys.primary
    stale_ring = KeyRing({old: world.keys.active[old]}, old)

    def user_replaces_app(row_id: int) -> None:
        if row_id == 2 and 2 in world.totp.rows:
            # The user sets up a new app in a process still sealing with the old primary: a new row, a new id.
            user_id = world.totp.rows.pop(2).user_id
            del world.secrets[2]
            secret = os.urandom(20)
            sealed = stale_ring.seal(secret, context=totp_context(user_id), random_bytes=os.urandom)
            world.secrets[world.totp.add(user_id, sealed)] = secret

    world.totp.before_reseal = user_replaces_app
    done = rotation.rotate(world.ctx, batch_size=2)
    assert done.progress.skipped == 1
    assert done.progress.resealed == 4  # rows 1, 3, 4 and the new row 5
    assert done.progress.finished
    assert world.opens()


def test_a_row_resealed_by_someone_else_is_not_counted_twice(world: World) -> None:
    world.enrol(1)
    world.keys.set_primary(world.keys.add_sealing_key())
    ring = world.keys.load_ring()

    def other_run_was_first(row_id: int) -> None:
        row = world.totp.rows[row_id]
        secret = ring.unseal(Sealed(row.key_fingerprint, row.sealed_secret), context=totp_context(row.user_id))
        sealed = ring.seal(secret, context=totp_context(row.user_id), random_bytes=os.urandom)
        world.totp.rows[row_id] = replace(row, key_fingerprint=sealed.key_fingerprint, sealed_secret=sealed.blob)

    world.totp.before_reseal = other_run_was_first
    progress = rotation.reseal(world.ctx)
    assert (progress.resealed, progress.skipped) == (0, 1)
    assert progress.finished and world.opens()


def test_a_secret_that_cannot_be_opened_is_reported_and_keeps_its_key(world: World) -> None:
    old = world.keys.primary
    world.enrol(1)
    damaged = world.enrol(2)
    row = world.totp.rows[damaged]
    world.totp.rows[damaged] = replace(row, sealed_secret=row.sealed_secret[:-1] + bytes([row.sealed_secret[-1] ^ 1]))

    done = rotation.rotate(world.ctx)
    assert done.progress.unopenable == (damaged,)
    assert done.progress.resealed == 1
    assert done.progress.remaining == {old: 1}
    assert not done.progress.finished
    assert old in world.keys.active and done.progress.retired == ()  # still named: never retired


def test_stopping_early_then_rotating_again_continues_without_a_third_key(world: World) -> None:
    old = world.keys.primary
    for user_id in range(1, 6):
        world.enrol(user_id)

    first = rotation.rotate(world.ctx, batch_size=2, max_batches=1)
    assert first.prepared is not None
    assert first.progress.resealed == 2 and first.progress.remaining == {old: 3}
    assert first.progress.retired == () and old in world.keys.active

    with pytest.raises(KeyRotationConflict, match="not finished"):
        rotation.prepare(world.ctx)

    second = rotation.rotate(world.ctx, batch_size=2)
    assert second.prepared is None  # continued
    assert second.progress.primary == first.prepared
    assert second.progress.resealed == 3 and second.progress.finished
    assert set(world.keys.active) == {first.prepared} and set(world.keys.retired) == {old}
    assert world.opens()


def test_secrets_sealed_under_a_retired_key_by_a_stale_process_are_picked_up(world: World) -> None:
    world.enrol(1)
    done = rotation.rotate(world.ctx)
    old = done.progress.retired[0]
    # A process started before the rotation still seals with the old key (now in retired/).
    stale_ring = KeyRing({old: world.keys.retired[old]}, old)
    secret = os.urandom(20)
    row_id = world.totp.add(7, stale_ring.seal(secret, context=totp_context(7), random_bytes=os.urandom))
    world.secrets[row_id] = secret
    assert world.opens()  # the retired key still opens it

    again = rotation.rotate(world.ctx)
    assert again.prepared is None and again.progress.resealed == 1 and again.progress.finished
    assert set(world.totp.count_by_key()) == {world.keys.primary}


def test_a_new_rotation_starts_once_the_previous_one_is_done(world: World) -> None:
    world.enrol(1)
    first = rotation.rotate(world.ctx)
    second = rotation.rotate(world.ctx)
    assert first.prepared and second.prepared and first.prepared != second.prepared
    assert len(world.keys.retired) == 2 and world.opens()


def test_list_keys_states_and_counts(world: World) -> None:
    world.enrol(1)
    old = world.keys.primary
    new = rotation.prepare(world.ctx)

    class Database(FakeDatabase):
        def sealed_counts(self) -> Mapping[str, int]:
            return {**world.totp.count_by_key(), "feedfacefeedface": 2}

    ctx = replace(world.ctx, database=Database())  # type: ignore[arg-type]
    listed = [(k.fingerprint, k.state.value, k.secrets) for k in rotation.list_keys(ctx)]
    assert listed == [(new, "primary", 0), (old, "active", 1), ("feedfacefeedface", "missing", 2)]
