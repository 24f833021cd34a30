"""The account security page: turn on an authenticator app, recovery codes, turning two-step verification off,
and the browsers remembered at sign-in (each with a button to forget it).

Pages that show a secret (the TOTP key, recovery codes) are rendered straight into the POST answer that made it:
the secret never travels in a URL, and no address can show it again later.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response

from nidan.core.models import ClockObservation, Method, User
from nidan.core.roles import is_instance_admin
from nidan.errors import InvalidCode, InvalidInput, MethodNotAllowed, MethodNotAvailable, TotpEnrollmentNotStarted
from nidan.services import devices, enrollment, second_step, signin, stepup, user_admin
from nidan.texts import Text, _, ngettext
from nidan.web import i18n
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.cookies import EnrollingPageSession, PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import problem, redirect, render
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for
from nidan.web.qr import qr_svg

router = APIRouter(include_in_schema=False)

DeviceId = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: The pages that ask for an action the security page's buttons post at once: "Confirm it's you" returns there.
CHANGE_APP_PAGE = "/security/totp/change"
RECOVERY_CODES_PAGE = "/security/recovery-codes"


def group_key(secret: str, size: int = 4) -> str:
    """``JBSWY3DPEHPK3PXP`` as ``JBSW Y3DP EHPK 3PXP``: easier to type into an app that cannot scan."""
    return " ".join(secret[i : i + size] for i in range(0, len(secret), size))


def describe_offset(observation: ClockObservation) -> Text:
    """How far off a device's clock was, to the minute: ``about 3 minutes ahead``."""
    seconds = observation.offset_seconds
    minutes = max(1, round(abs(seconds) / 60))
    if seconds > 0:
        return ngettext("about %(n)d minute ahead", "about %(n)d minutes ahead", minutes)
    return ngettext("about %(n)d minute behind", "about %(n)d minutes behind", minutes)


@router.get("/security")
def security_page(request: Request, ctx: Services, session: PageSession) -> Response:
    state = enrollment.security_state(ctx, session.user.id)
    latest = state.clock_observations[0] if state.clock_observations else None
    return render(
        request,
        "security.html",
        username=session.user.username,
        user=session.user,
        is_admin=is_instance_admin(session.user),
        manages_something=user_admin.is_manager(ctx, session.user),
        state=state,
        clock_observation=latest,
        clock_offset=describe_offset(latest) if latest else None,
        devices=devices.devices_of(ctx, session.user.id),
        default_choices=stepup.default_choices(ctx, session.user),
        default_method=session.user.default_method,
    )


@router.post("/security/default-method")
def choose_default_method(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    chosen = next((m for m in Method if m.value == field(form, "method", 32)), None)
    if chosen is None:
        return redirect("/security")
    try:
        second_step.choose_default(ctx, session.user, chosen, client)
    except (InvalidInput, MethodNotAllowed, MethodNotAvailable):
        return redirect("/security")  # the page offers only what may be chosen: an old tab, a forged form
    return redirect("/security", "default_method_changed")


def _enrolment_page(request: Request, ctx: Services, user: User, *, replacing: bool) -> Response:
    started = enrollment.start_totp(ctx, user)
    title = i18n.catalog_for(request).text(_("QR code with the key for your authenticator app"))
    return render(
        request,
        "totp_setup.html",
        username=user.username,
        qr=qr_svg(started.otpauth_uri, title=title),
        key=group_key(started.secret),
        account=user.username,
        issuer=ctx.issuer,
        replacing=replacing,
    )


#: How an enrolment-only sign-in began, when it was not with the password (``?via=``, set by the page that sent the
#: person here): the setup page then does not say "your password was right".
SETUP_VIA_RECOVERY_LINK = "recovery_link"


@router.get("/security/setup")
def setup_required_page(
    request: Request,
    ctx: Services,
    session: EnrollingPageSession,
    via: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Where a sign-in that must set up 2FA first lands: why, and the one thing to do."""
    if not session.enrolment_only:
        return redirect("/security")
    state = enrollment.security_state(ctx, session.user.id)
    # Only the wording depends on ``via``: the recovery link resets 2FA and asks for it again, so that is checked.
    recovery_link = via == SETUP_VIA_RECOVERY_LINK and state.registration_required
    return render(
        request,
        "setup_required.html",
        username=session.user.username,
        by_administrator=state.registration_required,
        by_recovery_link=recovery_link,
    )


@router.post("/security/totp")
def start_totp(request: Request, form: CheckedForm, ctx: Services, session: EnrollingPageSession) -> Response:
    replacing = enrollment.security_state(ctx, session.user.id).totp_enabled
    # Changing an authenticator that is on is sensitive; the first set-up right after sign-in is not, and neither
    # is the setup an enrolment-only sign-in was just sent to.
    if replacing and not session.enrolment_only and (ask := confirm_if_needed(request, ctx, session, CHANGE_APP_PAGE)):
        return ask
    return _enrolment_page(request, ctx, session.user, replacing=replacing)


@router.get(CHANGE_APP_PAGE)
def change_app_page(request: Request, ctx: Services, session: PageSession) -> Response:
    """What changing the authenticator app does, with the button that starts it: where "Confirm it's you" returns
    to after the security page's button asked for it (a POST is never replayed)."""
    if not enrollment.security_state(ctx, session.user.id).totp_enabled:
        return redirect("/security")
    if ask := confirm_if_needed(request, ctx, session, CHANGE_APP_PAGE):
        return ask
    return render(request, "totp_change.html", username=session.user.username)


@router.post("/security/totp/activate")
def activate_totp(
    request: Request, form: CheckedForm, ctx: Services, session: EnrollingPageSession, client: Client
) -> Response:
    user = session.user
    try:
        activated = enrollment.activate_totp(ctx, user, field(form, "code", 64), client=client)
    except (InvalidCode, TotpEnrollmentNotStarted) as exc:
        # The key is not shown again (it is sealed in storage); the app that scanned it can still give a code.
        return render(
            request,
            "totp_retry.html",
            status=status_for(exc),
            username=user.username,
            problem=problem(exc, user.username),
            can_retry=isinstance(exc, InvalidCode),
            replacing=enrollment.security_state(ctx, user.id).totp_enabled,
        )
    full_session = None
    if session.enrolment_only:
        # The sign-in that had to set up 2FA continues as a full one. Known before the page is made, so its forms
        # are bound to the session cookie the browser will send with them (pages.csrf).
        full_session = signin.finish_enrolment(ctx, session, client).session_token
        cookies.forms_follow_session(request, full_session)
    response: Response
    if activated.recovery_codes:  # new to 2FA, or registering again: a new set to save
        response = _codes_page(request, ctx, user, activated.recovery_codes, first_time=True)
    else:
        response = render(request, "totp_replaced.html", username=user.username)
    if full_session is not None:
        cookies.set_session(request, response, ctx, full_session)
    return response


@router.get(RECOVERY_CODES_PAGE)
def regenerate_confirm_page(request: Request, ctx: Services, session: PageSession) -> Response:
    """What a new set of recovery codes does, with the button that makes it (where "Confirm it's you" returns to)."""
    if not enrollment.security_state(ctx, session.user.id).totp_enabled:
        return redirect("/security")
    if ask := confirm_if_needed(request, ctx, session, RECOVERY_CODES_PAGE):
        return ask
    return render(request, "security_recovery_codes.html", username=session.user.username)


@router.post(RECOVERY_CODES_PAGE)
def regenerate_recovery_codes(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    if ask := confirm_if_needed(request, ctx, session, RECOVERY_CODES_PAGE):
        return ask
    codes = enrollment.regenerate_recovery_codes(ctx, session.user, client=client)
    return _codes_page(request, ctx, session.user, codes, first_time=False)


def recovery_codes_text(codes: list[str], user: User, issuer: str, language: i18n.Catalog | None = None) -> str:
    """The downloaded file, in ``language`` (English without one)."""
    said = language or i18n.catalog(i18n.DEFAULT_LOCALE)
    lines = [
        said.text(_("Recovery codes for %(name)s at %(issuer)s", name=user.username, issuer=issuer)),
        "",
        said.text(_("Each code signs you in once when you cannot use your authenticator app.")),
        said.text(_("Keep them somewhere safe, apart from your phone.")),
        "",
        *codes,
        "",
    ]
    return "\n".join(lines)


def _codes_page(request: Request, ctx: Services, user: User, codes: list[str], *, first_time: bool) -> Response:
    text = recovery_codes_text(codes, user, ctx.issuer, i18n.catalog_for(request))
    return render(
        request,
        "recovery_codes.html",
        username=user.username,
        codes=codes,
        issuer=ctx.issuer,
        first_time=first_time,
        # Built into the page, never fetched: a download link that no server address answers.
        download_href="data:text/plain;charset=utf-8," + quote(text),
        download_name=_safe_filename(f"{ctx.issuer}-{user.username}-recovery-codes.txt"),
    )


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


@router.get("/security/totp/disable")
def disable_confirm_page(request: Request, ctx: Services, session: PageSession) -> Response:
    if not enrollment.security_state(ctx, session.user.id).totp_enabled:
        return redirect("/security")
    if ask := confirm_if_needed(request, ctx, session, "/security/totp/disable"):
        return ask
    return render(request, "disable_confirm.html", username=session.user.username)


@router.post("/security/totp/disable")
def disable_totp(request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client) -> Response:
    if ask := confirm_if_needed(request, ctx, session, "/security/totp/disable"):
        return ask
    enrollment.disable_totp(ctx, session.user, client=client)
    return redirect("/security", "disabled")


@router.post("/security/devices/{device_id}/forget")
def forget_device(
    request: Request, device_id: DeviceId, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    # Forgetting only takes a shortcut away: no confirmation of who you are, as for revoking a token.
    devices.forget(ctx, session.user, device_id, client=client)
    return redirect("/security", "device_forgotten")
