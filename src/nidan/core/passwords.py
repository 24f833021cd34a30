"""Password hashing with argon2id (argon2-cffi), OWASP parameters by default.

The hash is computed in the caller's thread here; where it runs instead (hashing threads of their own, each keeping
its argon2 buffer) is infrastructure, in ``nidan.adapters.password_hashing``."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import resources
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from nidan.core.recovery import HashParameters
from nidan.texts import Text, _

T = TypeVar("T")

#: The shortest password nidan lets anyone choose (NIST SP 800-63B asks for at least 8; 12 resists guessing far
#: longer). Passwords set before the minimum rose keep working: only a new password is held to it.
MIN_LENGTH = 12
#: A username this long or longer may not appear anywhere in the password; a shorter one only not as all of it
#: (two letters, say, turn up inside too many words to refuse them all).
USERNAME_INSIDE_MIN_LENGTH = 3
#: The common passwords nidan refuses, shipped in the package (see the file's header for where they come from).
COMMON_PASSWORDS_FILE = "common_passwords.txt"
#: argon2-cffi's default salt length, which the hashes it makes carry.
SALT_BYTES = 16
MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class VerifyPassword:
    """Work for the hashing threads: does ``password`` match ``stored_hash``? (``None``: an unknown user, checked
    against a hash nothing matches, in the same time.) The answer is a ``bool``."""

    stored_hash: str | None
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class HashPassword:
    """Work for the hashing threads: a new hash of ``password`` (a ``str``)."""

    password: str = field(repr=False)


PasswordWork = VerifyPassword | HashPassword


@dataclass(frozen=True, slots=True)
class Pause:
    """Not work for the hashing threads: the use case waits ``seconds`` for others' attempts to settle (see
    ``nidan.services.throttling.take_turn``) before it goes on. The answer (``True``) carries nothing."""

    seconds: float


#: A use case that needs a password checked or hashed on the way: it yields the work and is sent the answer.
#: ``services.password_steps.run_now`` drives one in the caller's thread; a face with an event loop can await
#: each answer instead.
PasswordSteps = Generator[PasswordWork | Pause, bool | str, T]


class PasswordHashing:
    """argon2id hashes and checks, computed in the caller's thread. A subclass decides where the work runs
    (``_run``, ``_start``) and how a check is computed (``_check``); the answers stay the same."""

    def __init__(self, params: HashParameters) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            hash_len=params.digest_bytes,
            type=Type.ID,
        )
        # Verified against when the username is unknown, so both answers take the same time.
        self._dummy_hash = unmatchable_hash(params)

    def _run(self, call: Callable[[], T]) -> T:
        """Where the work is computed, waiting for it: here, in the caller's thread."""
        return call()

    def _start(self, call: Callable[[], bool | str]) -> Future[bool | str]:
        """Where the work is computed, without waiting: here, so the future is done already."""
        done: Future[bool | str] = Future()
        try:
            done.set_result(call())
        except Exception as error:  # handed to whoever reads the future, as an executor would
            done.set_exception(error)
        return done

    def _check(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``; raises argon2-cffi's errors (and ``UnicodeEncodeError``)."""
        return self._hasher.verify(stored_hash, password)

    def hash(self, password: str) -> str:
        return self._run(partial(self._hasher.hash, password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        return self._run(partial(self._verify_here, stored_hash, password))

    def _verify_here(self, stored_hash: str | None, password: str) -> bool:
        known = bool(stored_hash)
        try:
            matched = self._check(stored_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
            return False
        return matched and known

    def do(self, work: PasswordWork) -> bool | str:
        """``work``, waiting for the answer."""
        if isinstance(work, VerifyPassword):
            return self.verify(work.stored_hash, work.password)
        return self.hash(work.password)

    def submit(self, work: PasswordWork) -> Future[bool | str]:
        """``work`` started without waiting: the answer's future (done already when it is computed here)."""
        call: Callable[[], bool | str]
        if isinstance(work, VerifyPassword):
            call = partial(self._verify_here, work.stored_hash, work.password)
        else:
            call = partial(self._hasher.hash, work.password)
        return self._start(call)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def unmatchable_hash(params: HashParameters) -> str:
    """An argon2id hash string with ``params`` and a made-up digest: verifying any password against it costs exactly
    a real verify, and finding one that matches would take an argon2 preimage. Made up rather than computed, so a
    process that never checks a password (a verify-API worker) never holds argon2's memory (7 MiB by default)."""

    def unpadded(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii").rstrip("=")

    salt, digest = b"nidan-unknown-u!"[:SALT_BYTES], bytes(params.digest_bytes)
    return (
        f"$argon2id$v=19$m={params.memory_cost_kib},t={params.time_cost},p={params.parallelism}"
        f"${unpadded(salt)}${unpadded(digest)}"
    )


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased; read from the package once, on the first check (no network,
    nothing outside the installed package)."""
    text = resources.files("nidan.core").joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    _header, _blank, listed = text.partition("\n\n")
    return frozenset(line for line in listed.splitlines() if line)


def _folded(text: str) -> str:
    """How passwords and usernames are compared: the same letters however they were typed (width, case)."""
    return unicodedata.normalize("NFKC", text).casefold()


def password_problem(password: str, *, username: str | None = None) -> Text | None:
    """Why ``password`` cannot be chosen as a new password, or ``None``: NIST SP 800-63B's rules, no composition
    rules. At least ``MIN_LENGTH`` characters, at most ``MAX_LENGTH``; not one of the common passwords attackers try
    first; not the ``username`` (nor containing it, for a username of ``USERNAME_INSIDE_MIN_LENGTH`` characters or
    more). The one check for every password someone sets; signing in never applies it."""
    if len(password) < MIN_LENGTH:
        return _("Choose a password of at least %(min)d characters.", min=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        return _("Choose a password of at most %(max)d characters.", max=MAX_LENGTH)
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return _("The password contains characters that cannot be stored (unpaired surrogates). Choose another.")
    folded = _folded(password)
    name = _folded(username) if username else ""
    if name and (folded == name or (len(name) >= USERNAME_INSIDE_MIN_LENGTH and name in folded)):
        return _("Choose a password that does not contain your username (%(username)s).", username=username)
    if folded in common_passwords():
        return _(
            "This password is too common: it is on the lists attackers try first. Choose another, for example a few "
            "unrelated words."
        )
    return None
