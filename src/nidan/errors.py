"""Every error nidan raises on purpose, with a stable snake_case ``code``.

Faces map these to HTTP answers in one table (``nidan.web.problems``); the ``code`` never changes once shipped,
so clients and support scripts can rely on it. The message is a sentence a person understands: what happened and
what to do next. It never contains a secret.

    NidanError
    ├── InvalidInput                    invalid_request
    │   ├── NoEnrollment                no_enrollment_found (400)
    │   ├── UsernameTaken               username_taken
    │   ├── WeakPassword                weak_password
    │   ├── BackupIncomplete            backup_incomplete
    │   ├── BackupDamaged               backup_damaged
    │   └── ToleranceAboveInstance      tolerance_above_instance
    ├── AuthenticationError
    │   ├── InvalidCredentials          invalid_credentials
    │   ├── InvalidCode                 invalid_code
    │   │   └── ClockSkewDetected       clock_skew_detected
    │   ├── MfaTokenInvalid             mfa_token_invalid
    │   ├── AuthenticationRequired      authentication_required
    │   ├── SetupTokenInvalid           setup_token_invalid
    │   ├── AppKeyInvalid               app_key_invalid
    │   ├── BasicAuthDenied             basic_auth_denied
    │   ├── RecoveryLinkInvalid         recovery_link_invalid
    │   └── PasswordLinkInvalid         password_link_invalid
    │       ├── PasswordLinkUsed        password_link_used
    │       └── PasswordLinkExpired     password_link_expired
    ├── StateConflict
    │   ├── TotpNotEnabled              totp_not_enabled
    │   ├── TotpEnrollmentNotStarted    totp_enrollment_not_started
    │   ├── MethodNotAvailable          method_not_available
    │   ├── SetupAlreadyDone            setup_already_done
    │   ├── DatabaseNotEmpty            database_not_empty
    │   ├── KeyRotationConflict         key_rotation_conflict
    │   ├── ApplicationExists           application_exists
    │   ├── TokenLimitReached           token_limit_reached
    │   ├── OrganisationExists          organisation_exists
    │   ├── MemberExists                member_exists
    │   ├── LastOwner                   last_owner
    │   ├── LastAdministrator           last_administrator
    │   ├── EnableTwoFactorFirst        enable_two_factor_first
    │   └── TwoFactorRequiredByPolicy   two_factor_required_by_policy
    ├── CsrfFailed                      csrf_failed
    ├── Refused
    │   ├── RateLimited                 rate_limited
    │   ├── VerificationLocked          verification_locked
    │   ├── ReauthenticationRequired    reauthentication_required
    │   ├── AdminRequired               admin_required
    │   ├── NotPermitted                not_permitted
    │   ├── CannotActOnSelf             cannot_act_on_self
    │   ├── AccountDisabled             account_disabled
    │   ├── MethodNotAllowed            method_not_allowed
    │   └── MfaSetupRequired            mfa_setup_required
    ├── NotFound                        not_found
    │   ├── UserNotFound                user_not_found
    │   ├── TokenNotFound               token_not_found
    │   ├── ApplicationNotFound         application_not_found
    │   ├── OrganisationNotFound        organisation_not_found
    │   ├── MemberNotFound              member_not_found
    │   ├── SessionNotFound             session_not_found
    │   └── DeviceNotFound              device_not_found
    ├── DatabaseUnavailable             database_unavailable
    │   └── DatabaseNotMigrated         database_not_migrated
    └── ConfigurationError              configuration_error
        ├── KeyMissing                  key_missing
        ├── HashKeyMissing              hash_key_missing
        ├── HashKeyMismatch             hash_key_mismatch
        └── InstanceNotFound            instance_not_found
"""

from __future__ import annotations

from nidan.texts import Text, Translations, _, joined, ngettext


class NidanError(Exception):
    code: str = "internal_error"
    default_message: Text = _("Something went wrong on our side. Try again; if it keeps happening, contact support.")

    def __init__(self, message: str | Text | None = None, *more: Text) -> None:
        # A plain str is shown as it is, in every language: only operators' messages (keys, configuration) do that.
        first = Text(message) if isinstance(message, str) else message or self.default_message
        #: The sentences to show, rendered in the reader's language by the face (``render``).
        self.texts: tuple[Text, ...] = (first, *more)
        #: In English: for logs and the command line.
        self.message = joined(self.texts)
        super().__init__(self.message)

    def render(self, translations: Translations | None = None, *, separator: str = " ") -> str:
        return joined(self.texts, translations, separator=separator)


class InvalidInput(NidanError):
    code = "invalid_request"
    default_message = _("The request is not valid. Check the fields and try again.")


class NoEnrollment(InvalidInput):
    """Atlassian's unenroll contract: the user has no second factor to remove (answered 400)."""

    code = "no_enrollment_found"
    default_message = _("No enrollment found for this user.")


class UsernameTaken(InvalidInput):
    code = "username_taken"
    default_message = _("That username is already taken. Choose another one.")


class WeakPassword(InvalidInput):
    code = "weak_password"
    default_message = _("Choose a password of at least 8 characters.")


class BackupIncomplete(InvalidInput):
    """A backup archive lacks a part an instance needs (the manifest, the dump, a key the data names)."""

    code = "backup_incomplete"
    default_message = _("The backup archive is incomplete. Nothing was restored.")


class BackupDamaged(InvalidInput):
    """A backup archive's parts do not match its manifest (checksums, row counts, key fingerprints)."""

    code = "backup_damaged"
    default_message = _("The backup archive is damaged or was altered. Nothing was restored.")


class ToleranceAboveInstance(InvalidInput):
    """An organisation asked to tolerate more wrong codes than the instance does: it may only be stricter."""

    code = "tolerance_above_instance"
    default_message = _(
        "An organisation may tolerate at most as many wrong codes as the instance does. Choose fewer, or leave it "
        "empty to use the instance's setting."
    )


class AuthenticationError(NidanError):
    code = "authentication_failed"
    default_message = _("Authentication failed.")


class InvalidCredentials(AuthenticationError):
    code = "invalid_credentials"
    default_message = _("Incorrect username or password. Check both and try again.")


class InvalidCode(AuthenticationError):
    code = "invalid_code"
    default_message = _(
        "That code is not valid. Enter the current 6-digit code from your authenticator app (each code works "
        "once), or use one of your recovery codes."
    )

    def __init__(
        self, message: str | Text | None = None, *, blocked_seconds: int = 0, next_failure_blocks: bool = False
    ) -> None:
        #: This failure started a block of so many seconds (the next try is refused until then), or ...
        self.blocked_seconds = blocked_seconds
        #: ... one more failure would start one: said before it happens, so nobody is surprised by a wait.
        self.next_failure_blocks = next_failure_blocks
        if blocked_seconds:
            super().__init__(
                message, _("Too many wrong codes: wait %(wait)s before you try again.", wait=_wait(blocked_seconds))
            )
        elif next_failure_blocks:
            super().__init__(message, _("One more wrong code and you will have to wait before you can try again."))
        else:
            super().__init__(message)


class ClockSkewDetected(InvalidCode):
    """The code matches the secret, but at a time far from ours: the device clock is wrong."""

    code = "clock_skew_detected"

    def __init__(self, offset_seconds: int) -> None:
        self.offset_seconds = offset_seconds
        minutes = max(1, round(abs(offset_seconds) / 60))
        about = (
            ngettext(
                "That code was not accepted: your device's clock seems to be about %(n)d minute ahead.",
                "That code was not accepted: your device's clock seems to be about %(n)d minutes ahead.",
                minutes,
            )
            if offset_seconds > 0
            else ngettext(
                "That code was not accepted: your device's clock seems to be about %(n)d minute behind.",
                "That code was not accepted: your device's clock seems to be about %(n)d minutes behind.",
                minutes,
            )
        )
        NidanError.__init__(
            self,
            about,
            _("Turn on automatic time and try a new code."),
            _("Android: Settings > System > Date & time > Set time automatically."),
            _("iPhone: Settings > General > Date & Time > Set Automatically."),
        )


class MfaTokenInvalid(AuthenticationError):
    code = "mfa_token_invalid"
    default_message = _("Your sign-in attempt has expired or was already used. Sign in again with your password.")


class AuthenticationRequired(AuthenticationError):
    code = "authentication_required"
    default_message = _("You are not signed in, or your session has ended. Sign in and try again.")


class SetupTokenInvalid(AuthenticationError):
    code = "setup_token_invalid"
    default_message = _(
        "This setup link is not valid: it has expired or was already used. Restart `nidan serve` to print a new one."
    )


class AppKeyInvalid(AuthenticationError):
    """A relying application's API key is missing, unknown or was removed."""

    code = "app_key_invalid"
    default_message = _(
        "The application's API key is missing or not valid. Send it as 'Authorization: Bearer nidan_key_...'; "
        "an administrator can register the application again (`nidan app add NAME`) if the key was lost."
    )


#: GitLab's words, kept exactly: Git clients and people searching for them already know what they mean.
BASIC_AUTH_DENIED_MESSAGE = (
    "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect or "
    "you're required to use a token instead of a password. If a token was provided, it was either incorrect, "
    "expired, or improperly scoped."
)


class BasicAuthDenied(AuthenticationError):
    """The forward-auth gate refused a username and password or token; the same answer for every reason."""

    code = "basic_auth_denied"
    # Word for word what GitLab answers, in English whatever the language: people search the web for it.
    default_message = Text(BASIC_AUTH_DENIED_MESSAGE)


class RecoveryLinkInvalid(AuthenticationError):
    code = "recovery_link_invalid"
    default_message = _(
        "This recovery link is not valid: it has expired or was already used. Run `nidan admin recover USERNAME` "
        "on the server again for a new one."
    )


class PasswordLinkInvalid(AuthenticationError):
    """A set-password link an administrator made for a new account is not one nidan made (or not all of it)."""

    code = "password_link_invalid"
    default_message = _(
        "This link to set your password is not valid. Check that you opened the whole link; if it still does not "
        "work, ask your administrator for a new one."
    )


class PasswordLinkUsed(PasswordLinkInvalid):
    code = "password_link_used"
    default_message = _(
        "This link was used already: a password was set with it, and it works only once. Sign in with that "
        "password; if you do not know it, ask your administrator."
    )


class PasswordLinkExpired(PasswordLinkInvalid):
    code = "password_link_expired"
    default_message = _(
        "This link has expired: a link to set your password works for a few days only. Ask your administrator for "
        "a new one."
    )


class StateConflict(NidanError):
    code = "conflict"
    default_message = _("The request conflicts with the current state.")


class TotpNotEnabled(StateConflict):
    code = "totp_not_enabled"
    default_message = _("Two-step verification is not turned on for this account.")


class TotpEnrollmentNotStarted(StateConflict):
    code = "totp_enrollment_not_started"
    default_message = _("Start setting up an authenticator app first, then enter the code it shows.")


class MethodNotAvailable(StateConflict):
    code = "method_not_available"
    default_message = _("That verification method is not set up for this account. Choose another method.")


class SetupAlreadyDone(StateConflict):
    code = "setup_already_done"
    default_message = _("This instance already has an administrator. Sign in instead.")


class DatabaseNotEmpty(StateConflict):
    code = "database_not_empty"
    default_message = _(
        "The database already holds data. Restore into an empty database, or pass --force to replace everything "
        "in it with the backup."
    )


class KeyRotationConflict(StateConflict):
    """A key rotation cannot take this step now (another one runs, one is unfinished, a key is still in use)."""

    code = "key_rotation_conflict"
    default_message = _("The key rotation cannot continue now.")


class ApplicationExists(StateConflict):
    code = "application_exists"
    default_message = _("An application with that name is registered already. Choose another name or remove it first.")


class TokenLimitReached(StateConflict):
    code = "token_limit_reached"
    default_message = _("You have too many access tokens and app passwords. Revoke ones you no longer use first.")


class OrganisationExists(StateConflict):
    code = "organisation_exists"
    default_message = _("An organisation with that short name exists already. Choose another one.")


class MemberExists(StateConflict):
    code = "member_exists"
    default_message = _("That user is a member of the organisation already. Change their role instead.")


class LastOwner(StateConflict):
    code = "last_owner"
    default_message = _(
        "This is the organisation's last owner: make someone else an owner first, so nobody is locked out of its "
        "settings."
    )


class LastAdministrator(StateConflict):
    """Disabling or deleting the only instance administrator left would leave nobody to run the instance."""

    code = "last_administrator"
    default_message = _(
        "This is the instance's last administrator: make another account an administrator first, so nobody is "
        "locked out of the admin console."
    )


class EnableTwoFactorFirst(StateConflict):
    code = "enable_two_factor_first"
    default_message = _(
        "You would be the first one asked to set up two-step verification and you have none: set up your "
        "authenticator app first (Account security), then require it of others."
    )


class TwoFactorRequiredByPolicy(StateConflict):
    code = "two_factor_required_by_policy"
    default_message = _(
        "Your organisation requires two-step verification, so it cannot be turned off. You can change to a new "
        "authenticator app instead, or ask an administrator to reset it if you lost yours."
    )


class CsrfFailed(NidanError):
    """A page form arrived without the token its page was rendered with: stale, or sent from another site."""

    code = "csrf_failed"
    default_message = _(
        "This form could not be accepted: it has expired or was sent from another site. Go back, reload the page "
        "and try again."
    )


class Refused(NidanError):
    """The request is understood but not allowed now; nothing was evaluated."""

    code = "refused"
    default_message = _("This is not allowed right now.")


def _wait(seconds: int) -> Text:
    """How long to wait, in words: seconds up to two minutes, then whole minutes (rounded up)."""
    if seconds < 120:
        return ngettext("%(n)d second", "%(n)d seconds", seconds)
    return ngettext("%(n)d minute", "%(n)d minutes", -(-seconds // 60))


class RateLimited(Refused):
    """Blocked by the backoff after consecutive failures; answered before anything is checked."""

    code = "rate_limited"

    def __init__(self, retry_after_seconds: int, message: str | Text | None = None) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        super().__init__(
            message
            or _(
                "Too many failed attempts. Wait %(wait)s, then try again. Each further failure doubles the wait; a "
                "correct attempt resets it.",
                wait=_wait(self.retry_after_seconds),
            )
        )


class VerificationLocked(Refused):
    """The hard cap of consecutive failures was reached: only an administrator can lift it."""

    code = "verification_locked"
    default_message = _(
        "Verification is locked for this account after too many failed attempts. Contact your administrator: they "
        "can unlock it after checking that it is really you."
    )


class ReauthenticationRequired(Refused):
    code = "reauthentication_required"
    default_message = _(
        "Confirm it is you before changing security settings: verify with a code from your authenticator app (or "
        "your password, if two-step verification is off) at POST /api/v1/auth/reauth, then try again."
    )


class AdminRequired(Refused):
    """Signed in, but not an instance administrator."""

    code = "admin_required"
    default_message = _("Only an instance administrator can do this. Ask an administrator if you need it done.")


class NotPermitted(Refused):
    """Signed in with an administrative role, but not over this user or organisation."""

    code = "not_permitted"
    default_message = _(
        "You cannot do this for that user or organisation: your role does not cover them. Ask an instance "
        "administrator."
    )


class MethodNotAllowed(Refused):
    """A second-step method the user's organisation does not allow (its ``allowed_methods``)."""

    code = "method_not_allowed"
    default_message = _(
        "Your organisation does not allow this verification method. Use a different verification option, or ask "
        "your administrator which methods are allowed."
    )


class CannotActOnSelf(Refused):
    code = "cannot_act_on_self"
    default_message = _(
        "Administrators cannot do this to their own account. Another administrator can, or use your own "
        "Account security page."
    )


class AccountDisabled(Refused):
    """An administrator disabled the account: said only to someone who proved the password (or to an application
    whose code was right), so the flag tells nothing to anyone else."""

    code = "account_disabled"
    default_message = _(
        "This account is disabled: it cannot sign in and its tokens and app passwords do not work. Contact your "
        "administrator."
    )


class MfaSetupRequired(Refused):
    """An enrolment session (2FA required, not set up yet) asked for something other than setting it up."""

    code = "mfa_setup_required"
    default_message = _(
        "Your organisation requires two-step verification. Set up an authenticator app first "
        "(POST /api/v1/me/totp, then POST /api/v1/me/totp/activate with its first code); then you can continue."
    )


class NotFound(NidanError):
    code = "not_found"
    default_message = _("Nothing was found at this address.")


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = _("No user with that username exists.")


class TokenNotFound(NotFound):
    code = "token_not_found"
    default_message = _("You have no access token or app password with that id (it may have been revoked already).")


class ApplicationNotFound(NotFound):
    code = "application_not_found"
    default_message = _("No application with that name is registered.")


class OrganisationNotFound(NotFound):
    code = "organisation_not_found"
    default_message = _("No organisation with that short name exists.")


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_message = _("That user is not a member of the organisation.")


class SessionNotFound(NotFound):
    code = "session_not_found"
    default_message = _("You have no such session. It may have ended already: reload the list.")


class DeviceNotFound(NotFound):
    code = "device_not_found"
    default_message = _("You have no remembered browser with that id (it may have been forgotten already).")


class DatabaseUnavailable(NidanError):
    """No database connection could be had: the server refused one (its connection limit) or none came free in
    time. Nothing was read or changed; answered 503 with ``Retry-After``."""

    code = "database_unavailable"
    default_message = _(
        "The database cannot be reached right now (it is busy or down). Nothing was changed. Try again in a "
        "moment; if it keeps happening, tell your administrator."
    )
    retry_after_seconds = 1


class DatabaseNotMigrated(DatabaseUnavailable):
    """The database answers, but a table or column nidan needs is not in it: emptied or recreated under a running
    server, or left at an older migration. Nothing was read or changed; answered 503 with ``Retry-After`` (it lasts
    until an administrator acts, so clients are asked to wait longer than for a busy database)."""

    code = "database_not_migrated"
    default_message = _(
        "The database is not set up for this version of nidan: a table or column it needs is missing (an empty "
        "database, or migrations not applied). Nothing was changed. Administrators: restart `nidan serve`, which "
        "applies the migrations as it starts, or restore the latest backup with `nidan restore`; `nidan doctor` "
        "shows the database's revision."
    )
    retry_after_seconds = 30


class ConfigurationError(NidanError):
    code = "configuration_error"
    default_message = _("nidan is not configured correctly. An administrator must fix the configuration.")


class KeyMissing(ConfigurationError):
    """Sealed data names a key this process does not hold: reported by name, never as a wrong code."""

    code = "key_missing"

    def __init__(
        self,
        fingerprint: str,
        *,
        secrets: int | None = None,
        keys_dir: str | None = None,
        message: str | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        # Translated: unsealing at sign-in or enrolment raises this, and a person reads it on the error page (the
        # CLI and the logs show the English). A ``message`` of the caller's own stays English: start-up and backup
        # only, for the operator at the terminal.
        super().__init__(message or _key_missing(fingerprint, secrets, keys_dir))


def _key_missing(key: str, secrets: int | None, keys_dir: str | None) -> Text:
    if secrets is None and keys_dir is None:
        return _(
            "The encryption key %(key)s that sealed this data is not in the key directory. Restore the key file "
            "seal-%(key)s.key from your backup into the key directory and restart nidan.",
            key=key,
        )
    if secrets is None:
        return _(
            "The encryption key %(key)s that sealed this data is not in the key directory %(dir)s. Restore the key "
            "file seal-%(key)s.key from your backup into the key directory and restart nidan.",
            key=key,
            dir=keys_dir,
        )
    if keys_dir is None:
        return ngettext(
            "The encryption key %(key)s that sealed %(n)d TOTP secret is not in the key directory. Restore the key "
            "file seal-%(key)s.key from your backup into the key directory and restart nidan.",
            "The encryption key %(key)s that sealed %(n)d TOTP secrets is not in the key directory. Restore the key "
            "file seal-%(key)s.key from your backup into the key directory and restart nidan.",
            secrets,
            key=key,
        )
    return ngettext(
        "The encryption key %(key)s that sealed %(n)d TOTP secret is not in the key directory %(dir)s. Restore the "
        "key file seal-%(key)s.key from your backup into the key directory and restart nidan.",
        "The encryption key %(key)s that sealed %(n)d TOTP secrets is not in the key directory %(dir)s. Restore the "
        "key file seal-%(key)s.key from your backup into the key directory and restart nidan.",
        secrets,
        key=key,
        dir=keys_dir,
    )


class HashKeyMissing(ConfigurationError):
    """``hash.key`` is gone while the database holds data: a new one would silently end every session."""

    code = "hash_key_missing"

    def __init__(self, keys_dir: str) -> None:
        # English on purpose (a plain str): only start-up and ``nidan backup`` raise this, before any page is served,
        # for the operator at the terminal; no person reads it on a page.
        super().__init__(
            f"The token-hashing key hash.key is not in the key directory {keys_dir}, but this instance is in use. "
            "nidan does not make a new one by itself: every session, sign-in attempt and setup link would stop "
            "working. Restore hash.key from your backup into the key directory and restart nidan; if it is lost "
            "for good, run `nidan keys rotate-hash` (everyone signs in again)."
        )


class HashKeyMismatch(ConfigurationError):
    """This process's ``hash.key`` is not the one the database is used with (another process, another copy)."""

    code = "hash_key_mismatch"

    def __init__(self, ours: str, recorded: str, keys_dir: str) -> None:
        # English on purpose, as ``HashKeyMissing``: start-up and ``nidan backup`` only, for the operator.
        super().__init__(
            f"The token-hashing key in {keys_dir}/hash.key (fingerprint {ours}) is not the one this database is "
            f"used with ({recorded}): sessions made by one process would be unknown to the other. Every process "
            "of one instance needs the same key files: copy hash.key from the key directory of a process that "
            "works (or from your backup) and restart. To replace it on purpose, run `nidan keys rotate-hash`."
        )


class InstanceNotFound(ConfigurationError):
    """A command other than ``nidan serve`` and ``nidan init`` found no nidan instance where it was pointed: no
    database there, or one nidan never set up. Commands never create an instance silently."""

    code = "instance_not_found"

    def __init__(self, data_dir: str, database: str) -> None:
        # English on purpose, as the key errors: the command line only, for the operator.
        super().__init__(
            f"No nidan instance at {data_dir} (database {database}). Point at one with --data-dir or "
            "NIDAN_DATA_DIR, or create one with `nidan init`."
        )
