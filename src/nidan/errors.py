"""Every error nidan raises on purpose, with a stable snake_case ``code``.

Faces map these to HTTP answers in one table (``nidan.web.problems``); the ``code`` never changes once shipped,
so clients and support scripts can rely on it. The message is a sentence a person understands: what happened and
what to do next. It never contains a secret.

    NidanError
    ├── InvalidInput                    invalid_request
    │   ├── UsernameTaken               username_taken
    │   └── WeakPassword                weak_password
    ├── AuthenticationError
    │   ├── InvalidCredentials          invalid_credentials
    │   ├── InvalidCode                 invalid_code
    │   │   └── ClockSkewDetected       clock_skew_detected
    │   ├── MfaTokenInvalid             mfa_token_invalid
    │   ├── AuthenticationRequired      authentication_required
    │   └── SetupTokenInvalid           setup_token_invalid
    ├── StateConflict
    │   ├── TotpNotEnabled              totp_not_enabled
    │   ├── TotpEnrollmentNotStarted    totp_enrollment_not_started
    │   ├── MethodNotAvailable          method_not_available
    │   └── SetupAlreadyDone            setup_already_done
    ├── CsrfFailed                      csrf_failed
    ├── Refused
    │   ├── RateLimited                 rate_limited
    │   ├── VerificationLocked          verification_locked
    │   ├── ReauthenticationRequired    reauthentication_required
    │   └── AdminRequired               admin_required
    ├── NotFound                        not_found
    │   └── UserNotFound                user_not_found
    └── ConfigurationError              configuration_error
        └── KeyMissing                  key_missing
"""

from __future__ import annotations


class NidanError(Exception):
    code: str = "internal_error"
    default_message: str = "Something went wrong on our side. Try again; if it keeps happening, contact support."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(NidanError):
    code = "invalid_request"
    default_message = "The request is not valid. Check the fields and try again."


class UsernameTaken(InvalidInput):
    code = "username_taken"
    default_message = "That username is already taken. Choose another one."


class WeakPassword(InvalidInput):
    code = "weak_password"
    default_message = "Choose a password of at least 8 characters."


class AuthenticationError(NidanError):
    code = "authentication_failed"
    default_message = "Authentication failed."


class InvalidCredentials(AuthenticationError):
    code = "invalid_credentials"
    default_message = "Incorrect username or password. Check both and try again."


class InvalidCode(AuthenticationError):
    code = "invalid_code"
    default_message = (
        "That code is not valid. Enter the current 6-digit code from your authenticator app (each code works "
        "once), or use one of your recovery codes."
    )


class ClockSkewDetected(InvalidCode):
    """The code matches the secret, but at a time far from ours: the device clock is wrong."""

    code = "clock_skew_detected"

    def __init__(self, offset_seconds: int) -> None:
        self.offset_seconds = offset_seconds
        minutes = max(1, round(abs(offset_seconds) / 60))
        direction = "ahead" if offset_seconds > 0 else "behind"
        super().__init__(
            f"That code was not accepted: your device's clock seems to be about {minutes} minute"
            f"{'s' if minutes != 1 else ''} {direction}. Turn on automatic time and try a new code. "
            "Android: Settings > System > Date & time > Set time automatically. "
            "iPhone: Settings > General > Date & Time > Set Automatically."
        )


class MfaTokenInvalid(AuthenticationError):
    code = "mfa_token_invalid"
    default_message = "Your sign-in attempt has expired or was already used. Sign in again with your password."


class AuthenticationRequired(AuthenticationError):
    code = "authentication_required"
    default_message = "You are not signed in, or your session has ended. Sign in and try again."


class SetupTokenInvalid(AuthenticationError):
    code = "setup_token_invalid"
    default_message = (
        "This setup link is not valid: it has expired or was already used. Restart `nidan serve` to print a new one."
    )


class StateConflict(NidanError):
    code = "conflict"
    default_message = "The request conflicts with the current state."


class TotpNotEnabled(StateConflict):
    code = "totp_not_enabled"
    default_message = "Two-step verification is not turned on for this account."


class TotpEnrollmentNotStarted(StateConflict):
    code = "totp_enrollment_not_started"
    default_message = "Start setting up an authenticator app first, then enter the code it shows."


class MethodNotAvailable(StateConflict):
    code = "method_not_available"
    default_message = "That verification method is not set up for this account. Choose another method."


class SetupAlreadyDone(StateConflict):
    code = "setup_already_done"
    default_message = "This instance already has an administrator. Sign in instead."


class CsrfFailed(NidanError):
    """A page form arrived without the token its page was rendered with: stale, or sent from another site."""

    code = "csrf_failed"
    default_message = (
        "This form could not be accepted: it has expired or was sent from another site. Go back, reload the page "
        "and try again."
    )


class Refused(NidanError):
    """The request is understood but not allowed now; nothing was evaluated."""

    code = "refused"
    default_message = "This is not allowed right now."


class RateLimited(Refused):
    """Blocked by the backoff after consecutive failures; answered before anything is checked."""

    code = "rate_limited"

    def __init__(self, retry_after_seconds: int, message: str | None = None) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        seconds = self.retry_after_seconds
        wait = f"{seconds} second{'s' if seconds != 1 else ''}" if seconds < 120 else f"{-(-seconds // 60)} minutes"
        super().__init__(
            message
            or f"Too many failed attempts. Wait {wait}, then try again. Each further failure doubles the wait; a "
            "correct attempt resets it."
        )


class VerificationLocked(Refused):
    """The hard cap of consecutive failures was reached: only an administrator can lift it."""

    code = "verification_locked"
    default_message = (
        "Verification is locked for this account after too many failed attempts. Contact your administrator: they "
        "can unlock it after checking that it is really you."
    )


class ReauthenticationRequired(Refused):
    code = "reauthentication_required"
    default_message = (
        "Confirm it is you before changing security settings: verify with a code from your authenticator app (or "
        "your password, if two-step verification is off) at POST /api/v1/auth/reauth, then try again."
    )


class AdminRequired(Refused):
    """Signed in, but not an instance administrator."""

    code = "admin_required"
    default_message = "Only an instance administrator can do this. Ask an administrator if you need it done."


class NotFound(NidanError):
    code = "not_found"
    default_message = "Nothing was found at this address."


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = "No user with that username exists."


class ConfigurationError(NidanError):
    code = "configuration_error"
    default_message = "nidan is not configured correctly. An administrator must fix the configuration."


class KeyMissing(ConfigurationError):
    """Sealed data names a key this process does not hold: reported by name, never as a wrong code."""

    code = "key_missing"

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        super().__init__(
            f"The encryption key {fingerprint} that sealed this data is not in the key directory. Restore the "
            f"key file seal-{fingerprint}.key from your backup into the key directory and restart nidan."
        )
