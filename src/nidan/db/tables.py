"""The schema, as SQLAlchemy Core tables. Alembic migrations under ``migrations/`` create exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every back end (SQLite keeps no offset itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a UTC-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming_convention)

organisations = Table(
    "organisations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    #: ``nidan.core.policy.TwoFactorPolicy``: who among the members must have two-step verification.
    Column("two_factor_policy", String(24), nullable=False, server_default=text("'optional'")),
    #: Days a member required to have 2FA may still skip setting it up, counted from their first such sign-in.
    Column("grace_period_days", Integer, nullable=False, server_default=text("0")),
    #: Space-separated ``Method`` values members may sign in with.
    Column("allowed_methods", String(64), nullable=False, server_default=text("'totp recovery_code'")),
    #: Wrong codes tolerated before the backoff blocks, for members; NULL: the instance's setting.
    Column("tolerated_failures", Integer, nullable=True),
    #: Days a browser may skip the second step once remembered (0: never); NULL: the instance's setting.
    Column("remember_device_days", Integer, nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False),
    # Case-folded, NFKC-normalised username: the unique key, so 'Alice' and 'alice' are one account.
    Column("username_key", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_sign_in_at", UtcDateTime, nullable=True),
    #: The first sign-in at which an organisation required 2FA of the user and they had none: the grace period's
    #: start. Cleared when they set it up.
    Column("two_factor_grace_started_at", UtcDateTime, nullable=True),
    #: An administrator asked the user to register their methods again (Azure's "require re-register MFA"), or
    #: reset them: the next sign-in leads into setup, whatever the policy. Cleared when they set it up.
    Column("registration_required_at", UtcDateTime, nullable=True),
    #: The second-step method the user prefers to be offered first (a ``Method`` value); NULL: no preference.
    Column("default_method", String(32), nullable=True),
    #: The person's language (``en``, ``ja``) and IANA time zone; NULL until they choose (the browser's are used).
    Column("locale", String(8), nullable=True),
    Column("time_zone", String(64), nullable=True),
    #: An administrator disabled the account (no sign-in, no token, no verify), and why; NULL: enabled.
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("disabled_reason", String(200), nullable=True),
    # Ids are never handed out twice (SQLite reuses a deleted highest one otherwise): the audit log, the backoff
    # counters and the security log's pages name users by id, and they outlive a deleted account.
    sqlite_autoincrement=True,
)

memberships = Table(
    "memberships",
    metadata,
    Column("organisation_id", Integer, ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    #: The organisation manages this account (GitLab's enterprise users): its owners may reset the user's 2FA.
    #: False for outside collaborators, whom only instance administrators help.
    Column("managed", Boolean, nullable=False, server_default=true()),
)

totp_credentials = Table(
    "totp_credentials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("key_fingerprint", String(32), nullable=False),
    Column("sealed_secret", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("activated_at", UtcDateTime, nullable=True),
    Column("last_used_step", BigInteger, nullable=True),
    Column("drift_steps", Integer, nullable=False, server_default=text("0")),
    Index("ix_totp_credentials_user_id", "user_id"),
    # At most one active and one pending authenticator per user, enforced by the database itself.
    Index(
        "uq_totp_credentials_user_state",
        "user_id",
        "state",
        unique=True,
    ),
)

recovery_code_sets = Table(
    "recovery_code_sets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("salt", LargeBinary, nullable=False),
    Column("hash_parameters", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_recovery_code_sets_user_id", "user_id"),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("set_id", Integer, ForeignKey("recovery_code_sets.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("digest", LargeBinary, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    UniqueConstraint("set_id", "position", name="uq_recovery_codes_set_position"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    #: When the holder last proved who they are (sign-in or step-up); sensitive actions need it to be recent.
    Column("verified_at", UtcDateTime, nullable=True),
    #: When the session was last used (noted at most every few minutes), for its owner's list of sessions.
    Column("last_seen_at", UtcDateTime, nullable=True),
    #: ``full``, or ``enrolment``: a sign-in that must set up 2FA first, and may do nothing else.
    Column("purpose", String(16), nullable=False, server_default=text("'full'")),
    Index("ix_sessions_user_id", "user_id"),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    #: Codes tried with this token; capped, so one password entry buys only a few guesses.
    Column("attempts", Integer, nullable=False, server_default=text("0")),
)

setup_tokens = Table(
    "setup_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

clock_observations = Table(
    "clock_observations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("observed_at", UtcDateTime, nullable=False),
    Column("offset_seconds", Integer, nullable=False),
    Column("context", String(32), nullable=False),
    Index("ix_clock_observations_user_id", "user_id"),
)

#: Consecutive verification failures per subject (a user's second factor, a username from one address, an address),
#: and the block they earned. Updated by compare-and-set on ``version`` so several processes can share it. A username
#: is keyed by its keyed hash, never as typed (a password typed into the username field would land here).
throttles = Table(
    "throttles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(24), nullable=False),
    Column("key", String(255), nullable=False),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("blocked_until", UtcDateTime, nullable=True),
    #: Set at the hard cap (NIST SP 800-63B): refused until an administrator clears it.
    Column("locked_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", UtcDateTime, nullable=False),
    #: Attempts being evaluated now (reserved, not failures), until ``pending_until``: see ``nidan.core.backoff``.
    Column("pending", Integer, nullable=False, server_default=text("0")),
    Column("pending_until", UtcDateTime, nullable=True),
    UniqueConstraint("scope", "key", name="uq_throttles_scope_key"),
)

#: The append-only security event log. Each row's ``hash`` covers its content and the previous row's hash, so an
#: edited, removed or reordered row breaks the chain. Users are named as well as numbered: the log outlives them.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("event_type", String(48), nullable=False),
    Column("actor_user_id", Integer, nullable=True),
    Column("actor_username", String(64), nullable=True),
    Column("subject_user_id", Integer, nullable=True),
    Column("subject_username", String(64), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_events_subject_user_id", "subject_user_id"),
    Index("ix_audit_events_occurred_at", "occurred_at"),
    Index("ix_audit_events_event_type", "event_type"),
)

#: One row: the last event's position and hash. Appending locks it, so concurrent appends form one chain.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: Which keys this database is used with, by fingerprint (never the keys themselves): ``hash`` (``hash.key``) and
#: ``primary`` (the sealing key new secrets get). Every process compares its own key files with these at start, so
#: one with another ``hash.key``, or without the primary sealing key, refuses to start instead of failing quietly.
instance_keys = Table(
    "instance_keys",
    metadata,
    Column("purpose", String(16), primary_key=True),
    Column("fingerprint", String(32), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

#: Personal access tokens and app passwords: what Git clients, registries and old mail clients use instead of a
#: password once 2FA is on. Only the keyed hash of the secret is kept; a revoked token stays, marked, so a later
#: attempt with it is recognised (and audited) as a revoked one.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("name", String(100), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    #: Space-separated ``nidan.core.access_tokens.Scope`` values.
    Column("scopes", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_access_tokens_user_id", "user_id"),
)

#: Relying applications allowed to call the verify API, each with the keyed hash of its API key.
applications = Table(
    "applications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    #: Case-folded name: the unique key, so 'Wiki' and 'wiki' are one application.
    Column("name_key", String(64), nullable=False, unique=True),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
)

#: One-time links for one user, by ``purpose`` (``nidan.core.models.LinkPurpose``): ``recovery``, printed by
#: ``nidan admin recover`` (local access is the proof), signs an administrator into 2FA setup; ``password``, made
#: by an administrator who created the account, lets its owner set their password.
recovery_links = Table(
    "recovery_links",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("purpose", String(16), nullable=False, server_default=text("'recovery'")),
)

#: Browsers a user asked not to be asked the second step again on, until ``expires_at`` (fixed when remembered).
#: Revoked ones stay, marked, until the user next remembers a browser (``delete_dead``).
remembered_devices = Table(
    "remembered_devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("first_ip", String(64), nullable=True),
    Column("last_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Index("ix_remembered_devices_user_id", "user_id"),
    # Rows are deleted (``delete_dead``): SQLite would hand a deleted highest id out again, and the audit log names
    # devices by id.
    sqlite_autoincrement=True,
)

#: Every token a remembered browser was given, by its keyed hash. The current one has no ``rotated_at``; rotated
#: ones are kept so that one coming back is recognised as a copy (and its device revoked).
remembered_device_tokens = Table(
    "remembered_device_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("device_id", Integer, ForeignKey("remembered_devices.id", ondelete="CASCADE"), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("rotated_at", UtcDateTime, nullable=True),
    Index("ix_remembered_device_tokens_device_id", "device_id"),
)
