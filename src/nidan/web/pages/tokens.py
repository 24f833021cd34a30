"""Personal access tokens and app passwords on the pages: list, create (the secret shown once), revoke.

Creating one is sensitive: it needs a verification within the step-up window, as the REST API does. When the
session's is older, the page offers "Confirm it's you" *before* the form (so nothing typed is lost), and a form
posted anyway (a tab left open) answers with the confirmation form and creates nothing. Revoking only takes access
away, so it needs no confirmation of who you are, only of what you meant.

The secret is rendered straight into the POST answer that made it, never into a URL or a page that can be
fetched again (the same rule as the recovery codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.datastructures import FormData

from nidan.core.access_tokens import NAME_MAX_LENGTH, AccessToken, Scope, TokenKind
from nidan.core.models import User
from nidan.errors import InvalidInput, ReauthenticationRequired, TokenLimitReached, TokenNotFound
from nidan.services import signin, tokens
from nidan.services.context import ServiceContext
from nidan.services.tokens import CreatedToken
from nidan.texts import Text, _, ngettext
from nidan.web.deps import Client, Services
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm
from nidan.web.pages.csrf import field as form_field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

PAGE = "/security/tokens"
#: What each scope opens, in a line (the gate names the scope a proxied route needs).
SCOPE_HELP: dict[Scope, Text] = {
    Scope.READ_REPOSITORY: _("Clone and pull Git repositories."),
    Scope.WRITE_REPOSITORY: _("Push to Git repositories (choose read_repository too to clone and pull)."),
    Scope.READ_REGISTRY: _("Pull container images from a registry."),
    Scope.WRITE_REGISTRY: _("Push container images to a registry."),
    Scope.API: _("Call the API of a service behind a proxy that asks nidan."),
}
KIND_LABELS: dict[TokenKind, Text] = {
    TokenKind.PERSONAL: _("Personal access token"),
    TokenKind.APP_PASSWORD: _("App password"),
}
#: The heading of the page that shows a new one.
NEW_TITLES: dict[TokenKind, Text] = {
    TokenKind.PERSONAL: _("Your new personal access token"),
    TokenKind.APP_PASSWORD: _("Your new app password"),
}
#: More scope fields than there are scopes is not a person's form.
MAX_SCOPE_FIELDS = 2 * len(Scope)

TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@dataclass(frozen=True, slots=True)
class ScopeChoice:
    value: str
    help: Text
    checked: bool


@dataclass(frozen=True, slots=True)
class Lifetime:
    """The expiry field's bounds and what to say about them."""

    tomorrow: str
    latest: str | None
    hint: Text
    app_hint: Text


@dataclass(frozen=True, slots=True)
class Entered:
    """What the person typed, shown again after a mistake (never a secret)."""

    name: str = ""
    scopes: tuple[str, ...] = ()
    expires_on: str = ""
    app_name: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    #: The form the error box sits above: "personal" or "app_password".
    form: str
    details: SupportDetails


def lifetime(ctx: ServiceContext) -> Lifetime:
    today = ctx.clock.now().astimezone(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    days = ctx.token_max_lifetime_days
    if days <= 0:
        return Lifetime(
            tomorrow=tomorrow,
            latest=None,
            hint=_(
                "Optional. The token stops working at the start of that day (00:00 UTC); leave it empty for a "
                "token that works until you revoke it."
            ),
            app_hint=_("It works until you revoke it."),
        )
    latest = (today + timedelta(days=days)).isoformat()
    return Lifetime(
        tomorrow=tomorrow,
        latest=latest,
        hint=ngettext(
            "Optional. The token stops working at the start of that day (00:00 UTC). Tokens live at most %(n)d day "
            "here: on or before %(latest)s, which is also the date when you leave it empty.",
            "Optional. The token stops working at the start of that day (00:00 UTC). Tokens live at most %(n)d days "
            "here: on or before %(latest)s, which is also the date when you leave it empty.",
            days,
            latest=latest,
        ),
        app_hint=ngettext(
            "It stops working after %(n)d day (on %(latest)s); revoke it sooner if you stop using it.",
            "It stops working after %(n)d days (on %(latest)s); revoke it sooner if you stop using it.",
            days,
            latest=latest,
        ),
    )


def scope_choices(checked: tuple[str, ...]) -> list[ScopeChoice]:
    return [ScopeChoice(s.value, SCOPE_HELP[s], s.value in checked) for s in Scope]


def _needs_confirmation(ctx: ServiceContext, session: signin.CurrentSession) -> bool:
    try:
        signin.require_recent_verification(ctx, session)
    except ReauthenticationRequired:
        return True
    return False


def _tokens_page(
    request: Request,
    ctx: ServiceContext,
    session: signin.CurrentSession,
    *,
    status: int = 200,
    entered: Entered | None = None,
    failure: Failure | None = None,
) -> Response:
    user = session.user
    chosen = entered or Entered()
    return render(
        request,
        "tokens.html",
        status=status,
        username=user.username,
        tokens=list(tokens.list_tokens(ctx, user)),
        now=ctx.clock.now(),
        kind_labels=KIND_LABELS,
        app_password_kind=TokenKind.APP_PASSWORD,
        scopes=scope_choices(chosen.scopes),
        lifetime=lifetime(ctx),
        entered=chosen,
        failure=failure,
        needs_confirmation=_needs_confirmation(ctx, session),
        name_max_length=NAME_MAX_LENGTH,
    )


@router.get(PAGE)
def tokens_page(request: Request, ctx: Services, session: PageSession) -> Response:
    return _tokens_page(request, ctx, session)


def parse_expiry(value: str) -> date | None:
    """The date field (``YYYY-MM-DD``, as ``<input type=date>`` sends it); empty: none chosen."""
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(_("The expiry date is not a date: use the form YYYY-MM-DD, e.g. 2027-06-30.")) from None


def _scopes_of(form: FormData) -> tuple[str, ...]:
    values = form.getlist("scopes")[:MAX_SCOPE_FIELDS]
    return tuple(value[:64] for value in values if isinstance(value, str))


def _created_page(request: Request, ctx: ServiceContext, user: User, created: CreatedToken) -> Response:
    token = created.token
    return render(
        request,
        "token_created.html",
        username=user.username,
        token=token,
        secret=created.secret,
        title=NEW_TITLES[token.kind],
        personal=token.kind is TokenKind.PERSONAL,
        scope_names=[s.value for s in token.scopes],
        git=Scope.READ_REPOSITORY in token.scopes or Scope.WRITE_REPOSITORY in token.scopes,
        registry=Scope.READ_REGISTRY in token.scopes or Scope.WRITE_REGISTRY in token.scopes,
    )


@router.post(f"{PAGE}/personal")
def create_personal_token(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    if ask := confirm_if_needed(request, ctx, session, PAGE):
        return ask
    entered = Entered(
        name=form_field(form, "name", 4 * NAME_MAX_LENGTH),
        scopes=_scopes_of(form),
        expires_on=form_field(form, "expires_on", 32),
    )
    try:
        created = tokens.create(
            ctx,
            session.user,
            kind=TokenKind.PERSONAL,
            name=entered.name,
            scopes=entered.scopes,
            expires_on=parse_expiry(entered.expires_on),
            client=client,
        )
    except (InvalidInput, TokenLimitReached) as exc:
        failure = Failure("personal", problem(exc, session.user.username))
        return _tokens_page(request, ctx, session, status=status_for(exc), entered=entered, failure=failure)
    return _created_page(request, ctx, session.user, created)


@router.post(f"{PAGE}/app-password")
def create_app_password(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    if ask := confirm_if_needed(request, ctx, session, PAGE):
        return ask
    entered = Entered(app_name=form_field(form, "name", 4 * NAME_MAX_LENGTH))
    try:
        created = tokens.create(
            ctx,
            session.user,
            kind=TokenKind.APP_PASSWORD,
            name=entered.app_name,
            scopes=None,
            expires_on=None,
            client=client,
        )
    except (InvalidInput, TokenLimitReached) as exc:
        failure = Failure("app_password", problem(exc, session.user.username))
        return _tokens_page(request, ctx, session, status=status_for(exc), entered=entered, failure=failure)
    return _created_page(request, ctx, session.user, created)


def _own_token(ctx: ServiceContext, user: User, token_id: int) -> AccessToken:
    for token in tokens.list_tokens(ctx, user):
        if token.id == token_id:
            return token
    raise TokenNotFound()


@router.get(PAGE + "/{token_id}/revoke")
def revoke_confirm_page(request: Request, token_id: TokenId, ctx: Services, session: PageSession) -> Response:
    token = _own_token(ctx, session.user, token_id)
    return render(
        request, "token_revoke.html", username=session.user.username, token=token, kind_label=KIND_LABELS[token.kind]
    )


@router.post(PAGE + "/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: TokenId, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    tokens.revoke(ctx, session.user, token_id, client=client)
    return redirect(PAGE, "token_revoked")
