"""What every use case is handed by the composition root: ports, keys and policy values, never config files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from nidan.core.backoff import BackoffPolicy
from nidan.core.passwords import PasswordHashing
from nidan.core.policy import OrgPolicy
from nidan.core.ports import Clock, RandomSource, SharedTransactionFactory, UnitOfWorkFactory
from nidan.core.recovery import HashParameters
from nidan.core.sealing import KeyRing
from nidan.core.tokens import token_hash


@dataclass(frozen=True)
class ServiceContext:
    uow: UnitOfWorkFactory
    clock: Clock
    random_bytes: RandomSource
    keyring: KeyRing
    hash_key: bytes
    passwords: PasswordHashing
    recovery_hash: HashParameters
    issuer: str
    session_lifetime: timedelta
    mfa_token_lifetime: timedelta
    mfa_token_max_attempts: int
    #: How recent a verification must be for sensitive actions (step-up, "sudo mode").
    step_up_window: timedelta
    #: Backoff for a user's second step (with the hard limit), a username's passwords, and a client address.
    backoff: BackoffPolicy
    password_backoff: BackoffPolicy
    address_backoff: BackoffPolicy
    #: Personal access tokens and app passwords live at most this many days (0: no cap).
    token_max_lifetime_days: int = 365
    #: Whether users without 2FA (and not required to have it) may use their password at the Basic gate.
    password_authentication_for_git: bool = True
    #: The policy a new organisation starts with.
    default_org_policy: OrgPolicy = field(default_factory=OrgPolicy)
    #: Days a browser may skip the second step once remembered (0: never), for users in no organisation and in
    #: organisations that set none of their own (``policy.remember_device_days``).
    remember_device_days: int = 0
    #: One transaction for several use cases at once (group commit), where a face batches calls; ``None``: none.
    shared: SharedTransactionFactory | None = None

    def hash_token(self, token: str, purpose: str) -> bytes:
        return token_hash(self.hash_key, token, purpose=purpose)
