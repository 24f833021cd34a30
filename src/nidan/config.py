"""Settings from ``nidan.toml`` and ``NIDAN_<SECTION>_<KEY>`` environment variables (the environment wins).

Only the composition root (``bootstrap``) reads them; everything else is handed the values it needs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from nidan.core.models import Method
from nidan.core.policy import MAX_GRACE_DAYS, MAX_REMEMBER_DEVICE_DAYS, TwoFactorPolicy
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


#: Two years, subdomains included: the duration hstspreload.org recommends. ``preload`` is the operator's choice: it is
#: hard to undo.
DEFAULT_HSTS = "max-age=63072000; includeSubDomains"
_HSTS_MAX_AGE = re.compile(r"max-age=([0-9]{1,10})", re.IGNORECASE)
_HSTS_FLAGS = ("includesubdomains", "preload")


def _checked_hsts(value: str) -> str:
    """An HSTS header value (RFC 6797): ``max-age=N`` once, ``includeSubDomains`` and ``preload`` at most once each,
    nothing else. Stricter than browsers, so a typo is refused at start instead of being silently ignored."""
    # Only spaces and tabs are trimmed: a line break (header injection) or any other control character is refused.
    value = value.strip(" \t")
    if not value:
        return ""
    if not value.isascii() or not value.isprintable():
        raise ValueError("must be one line of printable ASCII")
    seen: list[str] = []
    max_age: int | None = None
    for directive in (part.strip() for part in value.split(";")):
        if not directive:
            continue
        if found := _HSTS_MAX_AGE.fullmatch(directive):
            name, max_age = "max-age", int(found.group(1))
        elif directive.lower() in _HSTS_FLAGS:
            name = directive.lower()
        else:
            raise ValueError(f"{directive!r} is not max-age=SECONDS, includeSubDomains or preload")
        if name in seen:
            raise ValueError(f"{name} is given twice")
        seen.append(name)
    if max_age is None:
        raise ValueError("max-age=SECONDS is required (max-age=0 tells browsers to forget an earlier one)")
    if "preload" in seen and ("includesubdomains" not in seen or max_age < 31_536_000):
        raise ValueError("preload needs includeSubDomains and a max-age of at least 31536000 (one year)")
    return value


def _checked_public_url(value: str) -> str:
    """An absolute http(s) address with a host: the pages derive nidan's own origin from it."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a URL: {exc}") from exc
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or not value.isprintable()
        or any(character.isspace() for character in value)
    ):
        raise ValueError("must be an http:// or https:// address with a host name, e.g. https://2fa.example.com")
    return value


class ServerSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="NIDAN_SERVER_", extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    #: The address people use to reach nidan (behind a proxy, its https URL); links, cookies, the pages' origin check
    #: and HSTS follow it.
    public_url: str | None = None
    #: The ``Strict-Transport-Security`` header every answer carries while ``public_url`` is https; '' sends none.
    hsts: str = DEFAULT_HSTS
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: One line per request on standard output (no query strings); off when a proxy in front keeps its own.
    access_log: bool = True
    #: Reverse proxies whose ``X-Forwarded-For`` is believed (addresses or CIDRs; env: comma-separated).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str | None) -> str | None:
        # Empty (as an unset environment variable often is) means unset, as it always did for links.
        if not value:
            return None
        return _checked_public_url(value)

    @field_validator("hsts")
    @classmethod
    def _valid_hsts(cls, value: str) -> str:
        return _checked_hsts(value)

    @property
    def strict_transport_security(self) -> str | None:
        """The HSTS value to send, or ``None``: only an https public address may pin browsers to https (over plain
        http browsers ignore the header, and pinning an http-only name would make it unreachable)."""
        if self.hsts and self.public_url and self.public_url.lower().startswith("https://"):
            return self.hsts
        return None

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
    """The two-step policy a new organisation starts with (each organisation then has its own), and the instance's
    setting for remembering browsers."""

    model_config = SettingsConfigDict(env_prefix="NIDAN_POLICY_", extra="forbid")
    #: ``optional``, ``required_for_admins`` or ``required_for_all``.
    two_factor: TwoFactorPolicy = TwoFactorPolicy.OPTIONAL
    grace_period_days: int = Field(default=0, ge=0, le=MAX_GRACE_DAYS)
    #: Methods members may sign in with; ``totp`` must be among them (env: comma-separated).
    allowed_methods: Annotated[list[Method], NoDecode] = Field(default_factory=lambda: list(Method))
    #: Wrong codes tolerated before the backoff blocks, for members; unset: ``rate_limit.tolerated_failures``.
    tolerated_failures: int | None = Field(default=None, ge=0, le=1000)
    #: Days a browser may skip the second step once remembered (0: never). The instance's setting: it applies to
    #: users in no organisation and to organisations that set none of their own.
    remember_device_days: int = Field(default=0, ge=0, le=MAX_REMEMBER_DEVICE_DAYS)

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


class UiSettings(_Section):
    """What people see."""

    model_config = SettingsConfigDict(env_prefix="NIDAN_UI_", extra="forbid")
    #: The language of pages and messages when neither the person, their browser nor the switcher chose one.
    default_locale: Literal["en", "ja"] = "en"


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
    ui: UiSettings = Field(default_factory=UiSettings)

    SECTIONS: ClassVar[dict[str, type[_Section]]] = {
        "server": ServerSettings,
        "security": SecuritySettings,
        "rate_limit": RateLimitSettings,
        "policy": PolicySettings,
        "ui": UiSettings,
    }

    @model_validator(mode="after")
    def _organisations_never_laxer(self) -> Settings:
        # New organisations start with policy.tolerated_failures: laxer than the instance, it would be stored and
        # shown but never applied (an organisation may only be stricter).
        tolerated, limit = self.policy.tolerated_failures, self.rate_limit.tolerated_failures
        if tolerated is not None and tolerated > limit:
            raise ValueError(
                f"policy.tolerated_failures ({tolerated}) is more than rate_limit.tolerated_failures ({limit}): an "
                "organisation may only be stricter than the instance"
            )
        return self

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
        if not path:  # a rule between settings (a model validator) names them in its own message
            problems.append(str(problem["msg"]).removeprefix("Value error, "))
            continue
        key = ".".join(path)
        env = "NIDAN_" + "_".join(part.upper() for part in path)
        got = f" (got {problem['input']!r})" if "input" in problem and not isinstance(problem["input"], dict) else ""
        problems.append(f"{key} ({env}): {problem['msg']}{got}")
    return "The configuration is not valid: " + "; ".join(problems) + "."
