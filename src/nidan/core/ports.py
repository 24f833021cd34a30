"""What services need from the outside world, as Protocols; ``nidan.db`` and ``nidan.adapters`` implement them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from nidan.core.access_tokens import AccessToken, Application, Scope, TokenKind
from nidan.core.audit import AuditEvent, AuditQuery, AuditRecord, ChainHead
from nidan.core.backoff import ThrottleState
from nidan.core.devices import PresentedToken, RememberedDeviceRecord
from nidan.core.models import (
    ClockObservation,
    InstanceRole,
    LinkPurpose,
    MfaChallenge,
    NewUser,
    OneTimeLink,
    OrgRole,
    RecoveryCodeSet,
    SessionRecord,
    ThrottleScope,
    TotpCredential,
    User,
)
from nidan.core.organisations import Member, Membership, Organisation
from nidan.core.policy import OrgPolicy
from nidan.core.sealing import Sealed


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class RandomSource(Protocol):
    def __call__(self, n: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SecondStep:
    """A name's second step, read together: the user (``None``: nobody has the name), their active authenticator
    (``None``: none) and the backoff state counting for them, or for the name when nobody has it (``None``: never
    counted)."""

    user: User | None
    authenticator: TotpCredential | None
    backoff: ThrottleState | None


class UserRepository(Protocol):
    def add(self, user: NewUser) -> User:
        """Raises ``UsernameTaken`` when the username key exists, even when another transaction just added it."""
        ...

    def get(self, user_id: int) -> User | None: ...
    def get_by_username_key(self, username_key: str) -> User | None: ...
    def list_all(self) -> Sequence[User]: ...
    def count_with_role(self, role: InstanceRole) -> int: ...

    def lock_enabled_with_role(self, role: InstanceRole) -> int:
        """Lock every user of ``role`` until the transaction ends and count those not disabled (so that two
        administrators disabling each other at once cannot leave none)."""
        ...

    def set_disabled(self, user_id: int, at: datetime | None, reason: str | None) -> None:
        """Disable the account from ``at`` (``None``: enable it again)."""
        ...

    def set_password_hash(self, user_id: int, password_hash: str) -> None: ...

    def delete(self, user_id: int) -> bool:
        """Delete the account and, with it, every row that refers to it (its authenticator, recovery codes,
        sessions, tokens, remembered browsers, memberships, links). The audit log keeps its events: they name the
        user by id and username, without a foreign key."""
        ...

    def set_default_method(self, user_id: int, method: str | None) -> None: ...
    def set_preferences(self, user_id: int, locale: str | None, time_zone: str | None) -> None: ...
    def record_sign_in(self, user_id: int, at: datetime) -> None: ...

    def lock(self, user_id: int) -> None:
        """Hold the user's row until the transaction ends: their read-then-write changes queue up."""
        ...

    def lock_by_username_key(self, username_key: str) -> User | None:
        """``get_by_username_key`` and ``lock`` in one step; ``None`` when nobody has that name."""
        ...

    def lock_for_second_step(self, username_key: str | None, unknown_key: str) -> SecondStep:
        """The user locked as ``lock_by_username_key`` locks them, with their active authenticator and their
        second step's backoff state (scope ``second_factor``, key their id) as they are once the lock is held, read
        in one query. When nobody has the name (or it is ``None``: not a valid one), the user and authenticator are
        ``None`` and the backoff is the one keyed ``unknown_key``; the same statements run either way, so that the
        time taken does not tell who exists or has an authenticator."""
        ...

    def start_grace(self, user_id: int, at: datetime) -> None:
        """Record the grace period's start, unless one is recorded already."""
        ...

    def require_registration(self, user_id: int, at: datetime | None) -> None: ...

    def registered(self, user_id: int) -> None:
        """2FA was set up: the grace period and any registration request are over."""
        ...


class OrganisationRepository(Protocol):
    def default_id(self) -> int: ...

    def add(self, slug: str, name: str, policy: OrgPolicy, at: datetime) -> Organisation:
        """Raises ``OrganisationExists`` when the slug is taken."""
        ...

    def get_by_slug(self, slug: str) -> Organisation | None: ...
    def list_all(self) -> Sequence[Organisation]: ...
    def set_policy(self, organisation_id: int, policy: OrgPolicy) -> None: ...

    def lock(self, organisation_id: int) -> None:
        """Hold the organisation's row until the transaction ends (changes to its owners queue up)."""
        ...

    def restart_grace(self, organisation_id: int) -> int:
        """Forget the members' grace-period starts (the organisation's requirement is new)."""
        ...

    def add_member(
        self, organisation_id: int, user_id: int, role: OrgRole, at: datetime, *, managed: bool = True
    ) -> None: ...

    def set_member(self, organisation_id: int, user_id: int, role: OrgRole, *, managed: bool) -> bool: ...
    def remove_member(self, organisation_id: int, user_id: int) -> bool: ...
    def members(self, organisation_id: int) -> Sequence[Member]: ...
    def memberships_of(self, user_id: int) -> Sequence[Membership]: ...

    def policies_of(self, user_id: int) -> Sequence[tuple[OrgPolicy, OrgRole]]:
        """The policy of every organisation the user belongs to, with their role there."""
        ...


class RecoveryLinkRepository(Protocol):
    """One-time links for a user, each of a ``purpose``: break-glass recovery and setting a password."""

    def add(
        self,
        user_id: int,
        token_hash: bytes,
        at: datetime,
        expires_at: datetime,
        *,
        purpose: LinkPurpose = LinkPurpose.RECOVERY,
    ) -> None:
        """A new link; the user's earlier unused links of the same purpose stop working (they expire now)."""
        ...

    def consume(self, token_hash: bytes, now: datetime, *, purpose: LinkPurpose = LinkPurpose.RECOVERY) -> int | None:
        """Spend a live link, atomically; the user id it was for, or ``None``."""
        ...

    def is_valid(self, token_hash: bytes, now: datetime, *, purpose: LinkPurpose = LinkPurpose.RECOVERY) -> bool: ...

    def find(self, token_hash: bytes, *, purpose: LinkPurpose) -> OneTimeLink | None:
        """The link, live or not (to tell a used one from an expired one); ``None`` when there is none."""
        ...


class TotpRepository(Protocol):
    def get_active(self, user_id: int) -> TotpCredential | None: ...
    def get_pending(self, user_id: int) -> TotpCredential | None: ...
    def replace_pending(self, user_id: int, sealed: Sealed, at: datetime) -> None: ...

    def consume_step(self, credential_id: int, step: int, drift_steps: int) -> bool:
        """Record ``step`` as used if it is newer than the last used one, atomically; ``False`` if it is not."""
        ...

    def activate(self, credential_id: int, step: int, drift_steps: int, at: datetime) -> bool:
        """Turn a pending credential active, atomically; ``False`` if it was not pending any more."""
        ...

    def delete_active(self, user_id: int) -> int: ...
    def delete_all(self, user_id: int) -> int: ...

    def count_by_key(self) -> Mapping[str, int]:
        """How many secrets (active and pending) each sealing-key fingerprint seals."""
        ...

    def sealed_elsewhere(self, key_fingerprint: str, *, after_id: int, limit: int) -> Sequence[TotpCredential]:
        """Up to ``limit`` credentials with ``id > after_id`` sealed under a key other than ``key_fingerprint``,
        in ``id`` order."""
        ...

    def reseal(self, credential_id: int, expected_key: str, sealed: Sealed) -> bool:
        """Store ``sealed`` if the row still exists and is still sealed under ``expected_key``, atomically;
        ``False`` when it changed meanwhile (it was replaced or already re-sealed)."""
        ...


class RecoveryCodeRepository(Protocol):
    def get_current(self, user_id: int) -> RecoveryCodeSet | None: ...

    def replace(self, user_id: int, salt: bytes, hash_parameters: str, digests: Sequence[bytes], at: datetime) -> None:
        """Revoke every earlier set of the user and store a new one."""
        ...

    def consume(self, set_id: int, position: int, at: datetime) -> bool:
        """Mark one code used, atomically; ``False`` if it was already used."""
        ...

    def revoke_all(self, user_id: int, at: datetime) -> int: ...
    def count_unused(self, user_id: int) -> int: ...


class SessionRepository(Protocol):
    def add(
        self,
        user_id: int,
        token_hash: bytes,
        at: datetime,
        expires_at: datetime,
        ip: str | None,
        agent: str | None,
        purpose: str = "full",
        *,
        verified: bool = True,
    ) -> int: ...
    def get_valid(self, token_hash: bytes, now: datetime) -> SessionRecord | None: ...
    def revoke(self, token_hash: bytes, at: datetime) -> bool: ...
    def list_live(self, user_id: int, now: datetime) -> Sequence[SessionRecord]: ...
    def touch(self, session_id: int, at: datetime, *, not_since: datetime) -> None:
        """Note the session as seen at ``at`` unless it was seen after ``not_since`` (a write every few minutes,
        not every request)."""
        ...

    def revoke_others(self, user_id: int, keep_session_id: int, at: datetime) -> int: ...
    def revoke_of_user(self, user_id: int, session_id: int, at: datetime) -> bool: ...
    def revoke_by_id(self, session_id: int, at: datetime) -> bool: ...
    def revoke_enrolments(self, user_id: int, at: datetime) -> int: ...
    def revoke_all_for_user(self, user_id: int, at: datetime) -> int: ...


class MfaChallengeRepository(Protocol):
    def add(self, user_id: int, token_hash: bytes, at: datetime, expires_at: datetime) -> None: ...
    def get_valid(self, token_hash: bytes, now: datetime, max_attempts: int) -> MfaChallenge | None:
        """A live challenge, read only (nothing counted)."""
        ...

    def claim_attempt(self, token_hash: bytes, now: datetime, max_attempts: int) -> MfaChallenge | None:
        """Count one attempt on a live challenge, atomically, and return it; ``None`` if it is spent, expired or
        out of attempts. The row stays locked until the transaction ends, so attempts on one token queue up."""
        ...

    def consume(self, challenge_id: int, at: datetime) -> bool:
        """Spend the challenge, atomically; ``False`` if another request spent it first."""
        ...


class SetupTokenRepository(Protocol):
    def replace(self, token_hash: bytes, at: datetime, expires_at: datetime) -> None: ...
    def is_valid(self, token_hash: bytes, now: datetime) -> bool: ...
    def consume(self, token_hash: bytes, now: datetime) -> bool: ...


class ClockObservationRepository(Protocol):
    def add(self, user_id: int, observation: ClockObservation) -> None: ...
    def recent(self, user_id: int, since: datetime) -> Sequence[ClockObservation]: ...


class ThrottleRepository(Protocol):
    def get(self, scope: ThrottleScope, key: str) -> ThrottleState | None: ...

    def compare_and_set(
        self, scope: ThrottleScope, key: str, expected: ThrottleState, new: ThrottleState, at: datetime
    ) -> bool:
        """Store ``new`` if the stored state is still ``expected`` (by version; version 0: none stored yet),
        atomically; ``False`` when another request changed it first."""
        ...

    def reset(self, scope: ThrottleScope, key: str, at: datetime, *, releasing: bool = False) -> int:
        """Forget the failures (a success, or an administrator's clearing); how many counters changed. ``releasing``:
        a reserved attempt succeeded, so its turn ends too (one fewer pending, never below zero)."""
        ...

    def list_with_prefix(self, scope: ThrottleScope, prefix: str) -> Sequence[tuple[str, ThrottleState]]: ...
    def reset_with_prefix(self, scope: ThrottleScope, prefix: str, at: datetime) -> int: ...


class AuditRepository(Protocol):
    def append(self, event: AuditEvent) -> AuditRecord:
        """Chain ``event`` after the last one. Locks the chain head until the transaction ends, so concurrent
        appends form one chain; the event commits or rolls back with the action it records. Append last, right
        before the commit: the lock is then the last one a use case takes, and is held briefly."""
        ...

    def head(self) -> ChainHead: ...
    def list_for_user(self, user_id: int, *, limit: int, before_seq: int | None) -> Sequence[AuditRecord]:
        """Events whose subject or actor is the user, newest first, below ``before_seq`` when given."""
        ...

    def search(self, query: AuditQuery) -> Sequence[AuditRecord]: ...
    def iterate(self, *, batch_size: int = 500) -> Iterator[AuditRecord]:
        """Every event in ``seq`` order, read in batches."""
        ...


class AccessTokenRepository(Protocol):
    def add(
        self,
        user_id: int,
        kind: TokenKind,
        name: str,
        token_hash: bytes,
        scopes: Sequence[Scope],
        at: datetime,
        expires_at: datetime | None,
    ) -> AccessToken: ...

    def find(self, token_hash: bytes) -> AccessToken | None:
        """The token with this hash, whatever its state (revoked and expired ones too)."""
        ...

    def list_live(self, user_id: int) -> Sequence[AccessToken]:
        """The user's tokens not revoked (expired ones included, so people see why one stopped), newest first."""
        ...

    def count_live(self, user_id: int, now: datetime) -> int: ...

    def revoke(self, user_id: int, token_id: int, at: datetime) -> AccessToken | None:
        """Revoke one of the user's live tokens, atomically; ``None`` if there is no such live token."""
        ...

    def revoke_all(self, user_id: int, at: datetime) -> int: ...

    def touch(self, token_id: int, at: datetime, *, not_since: datetime) -> None:
        """Record a use, unless one was recorded after ``not_since`` (one write a minute, not one a request)."""
        ...


class ApplicationRepository(Protocol):
    def add(self, name: str, name_key: str, key_hash: bytes, at: datetime, created_by: str | None) -> Application:
        """Raises ``ApplicationExists`` when the name key is taken."""
        ...

    def find_by_key(self, key_hash: bytes) -> Application | None: ...
    def list_all(self) -> Sequence[Application]: ...
    def remove(self, name_key: str) -> Application | None: ...
    def touch(self, application_id: int, at: datetime, *, not_since: datetime) -> None: ...


class RememberedDeviceRepository(Protocol):
    def add(
        self,
        user_id: int,
        token_hash: bytes,
        at: datetime,
        expires_at: datetime,
        ip: str | None,
        agent: str | None,
    ) -> RememberedDeviceRecord:
        """A newly remembered browser with its first token."""
        ...

    def rotate(
        self, token_hash: bytes, *, user_id: int, now: datetime, created_after: datetime
    ) -> RememberedDeviceRecord | None:
        """Mark the token rotated, atomically (``... WHERE rotated_at IS NULL``), if it is the current token of a
        device of ``user_id`` that is not revoked, not expired at ``now`` and was remembered after
        ``created_after``; return that device. ``None`` when nothing was rotated: of two uses of one token, exactly
        one gets the device."""
        ...

    def issue(self, device_id: int, token_hash: bytes, at: datetime, ip: str | None) -> None:
        """The device's next token, and its use recorded (``last_used_at``, ``last_ip``)."""
        ...

    def find_token(self, token_hash: bytes) -> PresentedToken | None:
        """The token with this hash and its device, whatever their state."""
        ...

    def revoke(self, device_id: int, at: datetime, *, user_id: int | None = None) -> bool:
        """Revoke a device not revoked yet (only if it is ``user_id``'s, when given); ``False`` if there was none."""
        ...

    def revoke_all(self, user_id: int, at: datetime) -> int: ...

    def list_live(self, user_id: int, now: datetime) -> Sequence[RememberedDeviceRecord]:
        """The user's devices neither revoked nor expired at ``now``, last used first."""
        ...

    def delete_dead(self, user_id: int, now: datetime) -> int:
        """Delete the user's revoked and expired devices with their tokens: none of them admits anyone again."""
        ...


class UnitOfWork(Protocol):
    """One use case's transaction. ``commit`` is called once, by the service; leaving without it rolls back."""

    users: UserRepository
    organisations: OrganisationRepository
    totp: TotpRepository
    recovery_codes: RecoveryCodeRepository
    sessions: SessionRepository
    mfa_challenges: MfaChallengeRepository
    setup_tokens: SetupTokenRepository
    clock_observations: ClockObservationRepository
    throttles: ThrottleRepository
    audit: AuditRepository
    access_tokens: AccessTokenRepository
    applications: ApplicationRepository
    recovery_links: RecoveryLinkRepository
    remembered_devices: RememberedDeviceRepository

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def commit(self) -> None: ...


class SharedTransaction(Protocol):
    """One transaction several use cases run in, each in a unit of work of its own (group commit): a unit that
    commits keeps its changes, one that leaves without committing undoes only its own, and nothing is stored
    until ``commit``; leaving without it undoes them all. Opening it takes the database's write lock."""

    def units(self) -> UnitOfWork:
        """A unit of work inside this transaction (one open at a time): a ``UnitOfWorkFactory`` for the use cases."""
        ...

    def __enter__(self) -> SharedTransaction: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class SharedTransactionFactory(Protocol):
    def __call__(self) -> SharedTransaction: ...
