"""Sealing-key rotation: a new primary key, every secret re-sealed under it in batches, the old key retired.

Rotation runs while the server does. It has two steps, so that several processes can be given the new key first:

1. ``prepare``: write a new sealing key and make it primary (in the key directory). Processes already running
   keep the key ring they loaded: copy the new key file to every host and restart every process before step 2,
   or they go on sealing new secrets with the old key.
2. ``reseal``: re-seal, batch by batch (one transaction each), every secret still sealed under another key; each
   row is changed by a conditional UPDATE (same id, still the same key), so a secret the user replaced meanwhile
   is left alone. Then every non-primary key that no row names any more moves to ``retired/``.

``rotate`` does both (single-process installs). Every step can be run again: after a crash, ``rotate`` sees the
unfinished rotation (a non-primary key still in use or in the directory) and continues it instead of adding yet
another key.

Only the command line runs a rotation (``nidan keys``), for the operator, in English: its messages are plain strings,
not msgids (``nidan.texts``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from nidan.core.keys import PURPOSE_HASH, PURPOSE_PRIMARY, KeyInventory
from nidan.core.sealing import KeyRing, Sealed
from nidan.errors import ConfigurationError, KeyRotationConflict
from nidan.services.maintenance import MaintenanceContext
from nidan.services.methods.totp import totp_context

DEFAULT_BATCH = 500


class KeyState(StrEnum):
    PRIMARY = "primary"
    ACTIVE = "active"
    RETIRED = "retired"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    fingerprint: str
    state: KeyState
    #: TOTP secrets (active and pending) sealed under this key.
    secrets: int


@dataclass(frozen=True, slots=True)
class ResealProgress:
    primary: str
    resealed: int = 0
    #: Rows that changed while being re-sealed (replaced by their user, or re-sealed by another run): left alone.
    skipped: int = 0
    #: Rows whose secret cannot be opened (damaged, or its key is missing): left under their key, by row id.
    unopenable: tuple[int, ...] = ()
    batches: int = 0
    #: Secrets still sealed under keys other than the primary, per key.
    remaining: Mapping[str, int] = field(default_factory=dict)
    retired: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return not self.remaining


@dataclass(frozen=True, slots=True)
class Rotation:
    #: The key ``prepare`` made primary (``None``: an unfinished rotation was continued).
    prepared: str | None
    progress: ResealProgress


def list_keys(ctx: MaintenanceContext) -> list[KeyStatus]:
    """Every key the directory holds or the data names: primary first, then active, retired, missing."""
    inventory = ctx.keys.inventory()
    counts = ctx.database.sealed_counts()
    names = inventory.sealing | set(counts)
    order = list(KeyState)

    def state(name: str) -> KeyState:
        if name == inventory.primary and name in inventory.active:
            return KeyState.PRIMARY
        if name in inventory.active:
            return KeyState.ACTIVE
        return KeyState.RETIRED if name in inventory.retired else KeyState.MISSING

    found = [KeyStatus(name, state(name), counts.get(name, 0)) for name in names]
    return sorted(found, key=lambda k: (order.index(k.state), k.fingerprint))


def _unfinished(inventory: KeyInventory, counts: Mapping[str, int]) -> bool:
    """A rotation has begun and not ended: a non-primary key is still in the directory or names secrets."""
    others_in_directory = inventory.active - {inventory.primary}
    return bool(others_in_directory) or any(n for name, n in counts.items() if name != inventory.primary)


def _current_counts(ctx: MaintenanceContext) -> Mapping[str, int]:
    with ctx.uow() as uow:
        return uow.totp.count_by_key()


def _prepare(ctx: MaintenanceContext) -> str:
    inventory = ctx.keys.inventory()
    if _unfinished(inventory, _current_counts(ctx)):
        raise KeyRotationConflict(
            f"A rotation to key {inventory.primary} is not finished: finish it with `nidan keys rotate --reseal` "
            "before preparing another."
        )
    name = ctx.keys.add_sealing_key()
    ctx.keys.set_primary(name)
    # From now on a process that starts without this key refuses, naming it (instead of sealing with the old one).
    ctx.database.replace_recorded_key(PURPOSE_PRIMARY, name, ctx.clock.now())
    return name


def prepare(ctx: MaintenanceContext) -> str:
    """Write a new sealing key and make it primary; its fingerprint."""
    with ctx.keys.rotation_lock():
        return _prepare(ctx)


def _reseal_batch(
    ctx: MaintenanceContext, ring: KeyRing, after_id: int, batch_size: int
) -> tuple[int, int, int, list[int]] | None:
    """One transaction: (last id seen, re-sealed, skipped, unopenable ids), or ``None`` when nothing is left."""
    resealed = skipped = 0
    unopenable: list[int] = []
    with ctx.uow() as uow:
        rows = uow.totp.sealed_elsewhere(ring.primary, after_id=after_id, limit=batch_size)
        if not rows:
            return None
        for row in rows:
            context = totp_context(row.user_id)
            try:
                secret = ring.unseal(Sealed(row.key_fingerprint, row.sealed_secret), context=context)
            except ConfigurationError:  # damaged, or its key is missing: reported, never guessed at
                unopenable.append(row.id)
                continue
            sealed = ring.seal(secret, context=context, random_bytes=ctx.random_bytes)
            if uow.totp.reseal(row.id, row.key_fingerprint, sealed):
                resealed += 1
            else:
                skipped += 1
        uow.commit()
    return rows[-1].id, resealed, skipped, unopenable


def _reseal(
    ctx: MaintenanceContext,
    *,
    batch_size: int,
    max_batches: int | None,
    on_batch: Callable[[ResealProgress], None] | None,
) -> ResealProgress:
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    ring = ctx.keys.load_ring()
    ctx.database.replace_recorded_key(PURPOSE_PRIMARY, ring.primary, ctx.clock.now())
    progress = ResealProgress(primary=ring.primary)
    after_id = 0
    exhausted = False
    while max_batches is None or progress.batches < max_batches:
        done = _reseal_batch(ctx, ring, after_id, batch_size)
        if done is None:
            exhausted = True
            break
        after_id, resealed, skipped, unopenable = done
        progress = ResealProgress(
            primary=ring.primary,
            resealed=progress.resealed + resealed,
            skipped=progress.skipped + skipped,
            unopenable=(*progress.unopenable, *unopenable),
            batches=progress.batches + 1,
        )
        if on_batch is not None:
            on_batch(progress)
    counts = _current_counts(ctx)
    remaining = {name: n for name, n in counts.items() if name != ring.primary and n}
    retired: list[str] = []
    if exhausted:
        inventory = ctx.keys.inventory()
        for name in sorted(inventory.active - {ring.primary}):
            if name not in remaining:
                ctx.keys.retire(name)
                retired.append(name)
    return ResealProgress(
        primary=progress.primary,
        resealed=progress.resealed,
        skipped=progress.skipped,
        unopenable=progress.unopenable,
        batches=progress.batches,
        remaining=remaining,
        retired=tuple(retired),
    )


def reseal(
    ctx: MaintenanceContext,
    *,
    batch_size: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    on_batch: Callable[[ResealProgress], None] | None = None,
) -> ResealProgress:
    """Re-seal every secret under the primary key, then retire the keys nothing names any more.

    ``max_batches`` stops early (as a crash would; running it again continues), ``on_batch`` reports progress."""
    with ctx.keys.rotation_lock():
        return _reseal(ctx, batch_size=batch_size, max_batches=max_batches, on_batch=on_batch)


def rotate(
    ctx: MaintenanceContext,
    *,
    batch_size: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    on_batch: Callable[[ResealProgress], None] | None = None,
) -> Rotation:
    """``prepare`` then ``reseal``; continues an unfinished rotation instead of starting another."""
    with ctx.keys.rotation_lock():
        inventory = ctx.keys.inventory()
        prepared = None if _unfinished(inventory, _current_counts(ctx)) else _prepare(ctx)
        progress = _reseal(ctx, batch_size=batch_size, max_batches=max_batches, on_batch=on_batch)
    return Rotation(prepared=prepared, progress=progress)


def replace_hash_key(ctx: MaintenanceContext) -> None:
    """A new token-hashing key (the old one moves to ``retired/``): every session, sign-in attempt and setup link
    stops working, in every process once restarted."""
    with ctx.keys.rotation_lock():
        ctx.keys.replace_hash_key()
        new = ctx.keys.inventory().hash_fingerprint
        assert new is not None
        ctx.database.replace_recorded_key(PURPOSE_HASH, new, ctx.clock.now())
