"""FastAPI dependencies: the service context, the caller's address, and the signed-in user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nidan.core.models import ClientInfo
from nidan.core.roles import is_instance_admin
from nidan.errors import AdminRequired, AuthenticationRequired, MfaSetupRequired
from nidan.services import signin, user_admin
from nidan.services.context import ServiceContext
from nidan.texts import _
from nidan.web.client_address import Network, client_address
from nidan.web.correlation import current_correlation_id

SESSION_COOKIE = "nidan_session"
SECURE_SESSION_COOKIE = "__Host-nidan_session"


# The two below are ``async`` because they never block: FastAPI runs a plain ``def`` dependency in the thread
# pool, and each such hop costs more than the work.
async def services(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.services
    return ctx


async def client_info(request: Request) -> ClientInfo:
    peer = request.client.host if request.client else None
    return client_info_of(
        request.app.state.trusted_proxies,
        peer,
        request.headers.getlist("x-forwarded-for"),
        request.headers.get("user-agent"),
    )


def client_info_of(
    trusted: tuple[Network, ...], peer: str | None, forwarded_for: list[str], user_agent: str | None
) -> ClientInfo:
    """Who is calling, for the audit log: the client address (through trusted proxies only) and user agent."""
    return ClientInfo(
        ip=client_address(peer, forwarded_for, trusted),
        user_agent=(user_agent or "")[:512] or None,
        correlation_id=current_correlation_id() or None,
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def cookies_secure(request: Request) -> bool:
    """Cookies are ``Secure`` and ``__Host-`` prefixed over https, and whenever the public address is https
    (behind a TLS-terminating proxy that does not pass the scheme on)."""
    if request.url.scheme == "https":
        return True
    settings = getattr(request.app.state, "settings", None)
    public_url = settings.server.public_url if settings is not None else None
    return isinstance(public_url, str) and public_url.lower().startswith("https://")


def session_cookie_name(request: Request) -> str:
    return SECURE_SESSION_COOKIE if cookies_secure(request) else SESSION_COOKIE


def current_session(request: Request, ctx: Annotated[ServiceContext, Depends(services)]) -> signin.CurrentSession:
    """A full session; an enrolment-only one (2FA required, not set up) gets 403 ``mfa_setup_required``."""
    session = enrolling_session(request, ctx)
    if session.enrolment_only:
        raise MfaSetupRequired()
    return session


def enrolling_session(request: Request, ctx: Annotated[ServiceContext, Depends(services)]) -> signin.CurrentSession:
    """Any session, enrolment-only ones too: for the few calls that set up 2FA (and show who is signed in)."""
    token = bearer_token(request)
    if token is None:
        raise AuthenticationRequired()
    return speaking_to(request, signin.current_session(ctx, token))


def speaking_to(request: Request, session: signin.CurrentSession) -> signin.CurrentSession:
    """From here on the request's answers (and errors) use the person's chosen language and time zone."""
    request.state.user_locale = session.user.locale
    request.state.user_time_zone = session.user.time_zone
    return session


def recently_verified(
    session: Annotated[signin.CurrentSession, Depends(current_session)],
    ctx: Annotated[ServiceContext, Depends(services)],
) -> signin.CurrentSession:
    """The signed-in session, if it proved who it is within the step-up window; else 403 reauthentication_required."""
    signin.require_recent_verification(ctx, session)
    return session


def admin_session(session: Annotated[signin.CurrentSession, Depends(current_session)]) -> signin.CurrentSession:
    """The signed-in session of an instance administrator; anyone else gets 403 ``admin_required``."""
    if not is_instance_admin(session.user):
        raise AdminRequired()
    return session


def recent_admin(
    session: Annotated[signin.CurrentSession, Depends(admin_session)],
    ctx: Annotated[ServiceContext, Depends(services)],
) -> signin.CurrentSession:
    """An administrator who verified recently. The role is checked first, so a member is told 'admin_required'
    rather than asked to re-verify for nothing."""
    signin.require_recent_verification(ctx, session)
    return session


def manager_session(
    session: Annotated[signin.CurrentSession, Depends(current_session)],
    ctx: Annotated[ServiceContext, Depends(services)],
) -> signin.CurrentSession:
    """The signed-in session of anyone with an administrative role (an instance administrator, or an
    organisation's owner, admin or user_admin); anyone else gets 403 ``admin_required``. Whom they may act on is
    the services' decision (403 ``not_permitted``)."""
    if not user_admin.is_manager(ctx, session.user):
        raise AdminRequired(
            _(
                "Only administrators (of this instance, or an organisation's owners, admins and user admins) can do "
                "this. Ask an administrator if you need it done."
            )
        )
    return session


def recent_manager(
    session: Annotated[signin.CurrentSession, Depends(manager_session)],
    ctx: Annotated[ServiceContext, Depends(services)],
) -> signin.CurrentSession:
    """A manager who verified recently; the role first, as for ``recent_admin``."""
    signin.require_recent_verification(ctx, session)
    return session


Services = Annotated[ServiceContext, Depends(services)]
Client = Annotated[ClientInfo, Depends(client_info)]
SignedIn = Annotated[signin.CurrentSession, Depends(current_session)]
#: A full session or an enrolment-only one (2FA required before anything else): only for setting up 2FA.
Enrolling = Annotated[signin.CurrentSession, Depends(enrolling_session)]
#: A session that verified recently: for sensitive actions (step-up, "sudo mode").
RecentlyVerified = Annotated[signin.CurrentSession, Depends(recently_verified)]
#: Every admin action: an instance administrator with a recent verification.
AdminSession = Annotated[signin.CurrentSession, Depends(recent_admin)]
#: An instance administrator's session, without a separate step-up (for the one call whose body is the step-up).
InstanceAdmin = Annotated[signin.CurrentSession, Depends(admin_session)]
#: Admin actions on users and organisations: anyone with an administrative role, with a recent verification.
ManagerSession = Annotated[signin.CurrentSession, Depends(recent_manager)]
