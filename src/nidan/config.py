"""Settings from ``nidan.toml`` and ``NIDAN_<SECTION>_<KEY>`` environment variables (the environment wins).

Only the composition root (``bootstrap``) reads them; everything else is handed the values it needs.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from nidan.core.models import Method
from nidan.core.policy import MAX_GRACE_DAYS, TwoFactorPolicy
from nidan.errors import ConfigurationError


class _Section(BaseSettings):
    """A settings section: the environment overrides what ``nidan.toml`` gave (passed in as init values)."""

    model_config = SettingsConfigDict(extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings


class ServerSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="NIDAN_SERVER_", extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    #: The address people use to reach nidan (behind a proxy, its https URL); links and cookies follow it.
    public_url: str | None = None
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: One line per request on standard output (no query strings); off when a proxy in front keeps its own.
    access_log: bool = True
    #: Reverse proxies whose ``X-Forwarded-For`` is believed (addresses or CIDRs; env: comma-separated).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from exc
        return value


class SecuritySettings(_Section):
    model_config = SettingsConfigDict(env_prefix="NIDAN_SECURITY_", extra="forbid")
    issuer: str = Field(default="nidan", min_length=1, max_length=64)
    session_lifetime_hours: int = Field(default=12, ge=1, le=24 * 30)
    mfa_token_lifetime_seconds: int = Field(default=300, ge=30, le=3600)
    #: Codes one sign-in attempt (mfa_token) may try before the password must be entered again.
    mfa_token_max_attempts: int = Field(default=5, ge=1, le=100)
    #: argon2id cost for passwords and recovery codes: 7 MiB, 5 passes, 1 lane, one of the settings OWASP's Password
    #: Storage Cheat Sheet lists as equal in defence to its 19 MiB and 2 passes (its lowest memory, and the floor
    #: here). Each hashing thread holds one such buffer while it hashes: less memory for more passes keeps a worker
    #: hashing on every core under 120 MB, at the same speed. Stored hashes keep their own cost (passwords are
    #: rehashed at the next sign-in, recovery codes keep theirs).
    argon2_memory_kib: int = Field(default=7 * 1024, ge=7 * 1024)
    argon2_time_cost: int = Field(default=5, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    #: Sensitive actions need a verification (sign-in or step-up) made within this many minutes.
    step_up_minutes: int = Field(default=10, ge=1, le=24 * 60)
    #: The longest a personal access token or app password may live, in days; one created without an expiry date
    #: expires then. 0: no cap (tokens without a date live until revoked).
    token_max_lifetime_days: int = Field(default=365, ge=0, le=100 * 365)
    #: Whether Git-style clients may use a password at the Basic gate (only users without 2FA, not required to
    #: have it). Off: tokens only, for everyone.
    password_authentication_for_git: bool = True


class RateLimitSettings(_Section):
    """Exponential backoff after consecutive failures (the Atlassian Data Center rule)."""

    model_config = SettingsConfigDict(env_prefix="NIDAN_RATE_LIMIT_", extra="forbid")
    #: Consecutive failures without a block; the K-th failure with K > T blocks for 2^(K-T-1) s.
    tolerated_failures: int = Field(default=1, ge=0, le=1000)
    #: The longest block, in seconds.
    max_block_seconds: int = Field(default=3600, ge=1)
    #: After this many consecutive failures the second step stays refused until an admin clears it (NIST 800-63B).
    hard_limit: int = Field(default=100, ge=2, le=100_000)
    #: Tolerated failures per client address (many people may share one, behind NAT).
    ip_tolerated_failures: int = Field(default=20, ge=0, le=100_000)


class PolicySettings(_Section):
    """The two-step policy a new organisation starts with (each organisation then has its own)."""

    model_config = SettingsConfigDict(env_prefix="NIDAN_POLICY_", extra="forbid")
    #: ``optional``, ``required_for_admins`` or ``required_for_all``.
    two_factor: TwoFactorPolicy = TwoFactorPolicy.OPTIONAL
    grace_period_days: int = Field(default=0, ge=0, le=MAX_GRACE_DAYS)
    #: Methods members may sign in with; ``totp`` must be among them (env: comma-separated).
    allowed_methods: Annotated[list[Method], NoDecode] = Field(default_factory=lambda: list(Method))
    #: Wrong codes tolerated before the backoff blocks, for members; unset: ``rate_limit.tolerated_failures``.
    tolerated_failures: int | None = Field(default=None, ge=0, le=1000)

    @field_validator("allowed_methods", mode="before")
    @classmethod
    def _split_methods(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_methods")
    @classmethod
    def _totp_allowed(cls, value: list[Method]) -> list[Method]:
        if Method.TOTP not in value:
            raise ValueError("totp must be allowed: it is how people set up two-step verification")
        return value


class Settings(_Section):
    model_config = SettingsConfigDict(env_prefix="NIDAN_", extra="forbid")
    data_dir: Path = Path("nidan-data")
    #: Overrides the embedded SQLite database, e.g. ``postgresql+psycopg://user@host/db``.
    database_url: str | None = None
    #: PostgreSQL connections each process keeps open, and how many more it may open under load. Every process
    #: may hold pool + overflow at once: keep (processes x that) below the server's ``max_connections``.
    database_pool_size: int = Field(default=10, ge=1, le=500)
    database_max_overflow: int = Field(default=10, ge=0, le=500)
    #: How long a request waits for a free connection before it is answered 503 ``database_unavailable``.
    database_pool_timeout_seconds: float = Field(default=10, gt=0, le=300)
    #: Where the key files live; defaults to ``<data_dir>/keys``. Several processes may share one read-only copy.
    keys_dir: Path | None = None
    server: ServerSettings = Field(default_factory=ServerSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)

    SECTIONS: ClassVar[dict[str, type[_Section]]] = {
        "server": ServerSettings,
        "security": SecuritySettings,
        "rate_limit": RateLimitSettings,
        "policy": PolicySettings,
    }

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'nidan.db').resolve()}"

    @property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config_file`` (default: ``$NIDAN_CONFIG`` or ``./nidan.toml`` if present) and the env."""
    path = config_file or Path(os.environ.get("NIDAN_CONFIG", "nidan.toml"))
    document: dict[str, Any] = {}
    if path.exists():
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    elif config_file is not None:
        raise ConfigurationError(f"The configuration file {path} does not exist.")
    top = {k: v for k, v in document.items() if k not in Settings.SECTIONS}
    top.update(overrides)
    try:
        sections: dict[str, Any] = {
            name: section_cls(**document.get(name, {})) for name, section_cls in Settings.SECTIONS.items()
        }
        return Settings(**top, **sections)
    except ValidationError as exc:
        raise ConfigurationError(describe_invalid_settings(exc)) from exc


_SECTION_OF_MODEL = {
    "Settings": "",
    "ServerSettings": "server",
    "SecuritySettings": "security",
    "RateLimitSettings": "rate_limit",
    "PolicySettings": "policy",
}


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line per problem, named as in nidan.toml and as the environment variable that sets it."""
    section = _SECTION_OF_MODEL.get(exc.title, "")
    problems = []
    for problem in exc.errors():
        path = [section, *(str(part) for part in problem["loc"])] if section else [str(p) for p in problem["loc"]]
        path = [part for part in path if part]
        key = ".".join(path)
        env = "NIDAN_" + "_".join(part.upper() for part in path)
        got = f" (got {problem['input']!r})" if "input" in problem and not isinstance(problem["input"], dict) else ""
        problems.append(f"{key} ({env}): {problem['msg']}{got}")
    return "The configuration is not valid: " + "; ".join(problems) + "."
