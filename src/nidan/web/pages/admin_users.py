"""The admin console's pages about one user: how they stand, their security log, and the actions that help them.

Each action (reset 2FA, require setup again, revoke tokens, clear blocks) is a confirmation page first (what will
happen, and a required reason for the audit log), then a POST with the CSRF token; both need a recent verification
("Confirm it's you" in place of the page when it is older than the step-up window). Whether the administrator may
act on this user at all is checked before that, so someone without the right is told so rather than asked to prove
who they are for nothing. The services check it again, and record the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from nidan.core.backoff import ThrottleState
from nidan.core.models import ClientInfo, User
from nidan.core.roles import is_instance_admin, refused_on_own_account
from nidan.errors import InvalidInput, NotFound
from nidan.services import account_status, audit, throttling, tokens, user_admin
from nidan.services.context import ServiceContext
from nidan.texts import Text, _
from nidan.web.deps import Client, Services
from nidan.web.pages import events
from nidan.web.pages.admin import ROLE_LABELS, console_gate, org_path, user_path
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.security import describe_offset
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

PREFIX = "/admin/users"
REASON_MIN_LENGTH = 3
REASON_MAX_LENGTH = 200

Username = Annotated[str, Path(min_length=1, max_length=256)]

Perform = Callable[[ServiceContext, str, User, ClientInfo, str], object]

#: Where a code from a phone with a wrong clock was refused (a clock observation's context, ``core.second_step``).
CLOCK_CONTEXTS: dict[str, Text] = {
    "sign_in": _("sign in"),
    "step_up": _("confirming it's you"),
    "verify": _("an application's verify call"),
}


@dataclass(frozen=True, slots=True)
class Action:
    slug: str
    #: The confirmation page's question (``%(user)s`` is the username: ``question_about`` fills it).
    question: Text
    button: Text
    notice: str
    perform: Perform
    #: An administrator cannot do this to their own account.
    not_self: bool = False
    danger: bool = False

    def question_about(self, username: str) -> Text:
        return replace(self.question, params=(("user", username),))


def _reset(ctx: ServiceContext, username: str, actor: User, client: ClientInfo, reason: str) -> object:
    return user_admin.reset_two_factor(ctx, username=username, actor=actor, client=client, reason=reason)


def _require(ctx: ServiceContext, username: str, actor: User, client: ClientInfo, reason: str) -> object:
    return user_admin.require_registration(ctx, username=username, actor=actor, client=client, reason=reason)


def _revoke(ctx: ServiceContext, username: str, actor: User, client: ClientInfo, reason: str) -> object:
    return tokens.revoke_all(ctx, username=username, actor=actor, client=client, reason=reason)


def _clear(ctx: ServiceContext, username: str, actor: User, client: ClientInfo, reason: str) -> object:
    return throttling.clear(ctx, username=username, actor=actor, client=client, reason=reason)


def _disable(ctx: ServiceContext, username: str, actor: User, client: ClientInfo, reason: str) -> object:
    return account_status.disable(ctx, username=username, actor=actor, client=client, reason=reason)


def _enable(ctx: ServiceContext, username: str, actor: User, client: ClientInfo, reason: str) -> object:
    return account_status.enable(ctx, username=username, actor=actor, client=client, reason=reason)


ACTIONS: dict[str, Action] = {
    action.slug: action
    for action in (
        Action(
            "reset",
            _("Reset two-step verification for %(user)s?"),
            _("Reset two-step verification"),
            "two_factor_reset",
            _reset,
            not_self=True,
            danger=True,
        ),
        Action(
            "require-registration",
            _("Ask %(user)s to set up two-step verification again?"),
            _("Require setup again"),
            "registration_required",
            _require,
            not_self=True,
        ),
        Action(
            "revoke-tokens",
            _("Revoke all access tokens and app passwords of %(user)s?"),
            _("Revoke all tokens and app passwords"),
            "tokens_revoked_all",
            _revoke,
            danger=True,
        ),
        Action("clear-blocks", _("Clear the blocks of %(user)s?"), _("Clear blocks"), "blocks_cleared", _clear),
        Action(
            "disable",
            _("Disable the account of %(user)s?"),
            _("Disable the account"),
            "user_disabled",
            _disable,
            not_self=True,
            danger=True,
        ),
        Action(
            "enable",
            _("Enable the account of %(user)s again?"),
            _("Enable the account"),
            "user_enabled",
            _enable,
            not_self=True,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Counter:
    """One backoff counter, said for people."""

    what: Text
    failures: int
    state: Text
    #: Refusing attempts now (blocked or locked).
    refusing: bool


def _counter(what: Text, state: ThrottleState, now: datetime) -> Counter:
    if state.locked_at is not None:
        return Counter(what, state.failures, _("locked since %(when)s", when=_when(state.locked_at)), True)
    if state.blocked_until is not None and state.blocked_until > now:
        return Counter(what, state.failures, _("blocked until %(when)s", when=_when(state.blocked_until)), True)
    return Counter(what, state.failures, _("not blocked"), False)


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def counters(block: throttling.BlockStatus, now: datetime) -> list[Counter]:
    """Every counter of the user: the second step, passwords per address, the Git gate per address."""
    rows = [_counter(_("Second step (codes, and confirming it's you)"), block.second_factor, now)]
    rows += [
        _counter(_("Password from %(address)s", address=address), state, now) for address, state in block.passwords
    ]
    rows += [
        _counter(_("Git and apps (gate) from %(address)s", address=address), state, now)
        for address, state in block.gate
    ]
    return rows


def offered(actions: Iterable[Action], *, actor: User, subject: User) -> set[str]:
    """The actions the user's page links to: those ``core.roles`` does not refuse on this subject (the page's gate
    and the services ask ``authority.require_user_manager`` the same, with the same ``not_self``)."""
    return {
        action.slug
        for action in actions
        if not refused_on_own_account(not_self=action.not_self, actor_id=actor.id, target_id=subject.id)
        and action.slug != ("enable" if not subject.disabled else "disable")
    }


def _action_of(slug: str) -> Action:
    action = ACTIONS.get(slug)
    if action is None:
        raise NotFound()
    return action


def clean_reason(value: str) -> str:
    """The reason for the audit log: one line of 3 to ``REASON_MAX_LENGTH`` characters (as the API and CLI ask)."""
    reason = " ".join(value.split())
    if not REASON_MIN_LENGTH <= len(reason) <= REASON_MAX_LENGTH or not reason.isprintable():
        raise InvalidInput(
            _(
                "Give a reason of %(least)d to %(most)d characters (e.g. a ticket number, or 'lost phone, called back "
                "on their desk number'): it goes into their security log with your name.",
                least=REASON_MIN_LENGTH,
                most=REASON_MAX_LENGTH,
            )
        )
    return reason


@router.get(PREFIX + "/{username}")
def user_page(request: Request, username: Username, ctx: Services, session: PageSession) -> Response:
    managed = console_gate(ctx, session)
    seen = user_admin.overview(ctx, username=username, actor=session.user)
    now = ctx.clock.now()
    return render(
        request,
        "admin_user.html",
        username=session.user.username,
        seen=seen,
        subject=seen.user,
        instance_admin_subject=is_instance_admin(seen.user),
        instance_admin_actor=is_instance_admin(session.user),
        is_self=seen.user.id == session.user.id,
        offered=offered(ACTIONS.values(), actor=session.user, subject=seen.user),
        observations=[(o, describe_offset(o)) for o in seen.security.clock_observations],
        clock_contexts=CLOCK_CONTEXTS,
        role_labels=ROLE_LABELS,
        counters=counters(seen.block, now),
        managed_org_ids={o.id for o in managed},
        actions=ACTIONS,
        path=user_path(seen.user),
        org_path=org_path,
    )


@router.get(PREFIX + "/{username}/events")
def user_events(
    request: Request,
    username: Username,
    ctx: Services,
    session: PageSession,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    console_gate(ctx, session)
    user = user_admin.require_manager_of(ctx, username=username, actor=session.user)
    records = audit.my_events(ctx, user.id, limit=events.PAGE_SIZE, before=before)
    older = records[-1].seq if len(records) == events.PAGE_SIZE else None
    return render(
        request,
        "admin_user_events.html",
        username=session.user.username,
        subject=user,
        rows=[events.event_row(item, user) for item in records],
        older=older,
        first_page=before is None,
        path=user_path(user),
    )


def _confirmation(
    request: Request,
    ctx: ServiceContext,
    actor: User,
    action: Action,
    username: str,
    *,
    status: int = 200,
    reason: str = "",
    failure: SupportDetails | None = None,
) -> Response:
    seen = user_admin.overview(ctx, username=username, actor=actor)
    return render(
        request,
        "admin_user_action.html",
        status=status,
        username=actor.username,
        action=action,
        question=action.question_about(seen.user.username),
        seen=seen,
        subject=seen.user,
        counters=counters(seen.block, ctx.clock.now()),
        path=user_path(seen.user),
        reason=reason,
        reason_min_length=REASON_MIN_LENGTH,
        reason_max_length=REASON_MAX_LENGTH,
        problem=failure,
    )


def _gate(
    request: Request, ctx: ServiceContext, session: PageSession, username: str, action: Action
) -> Response | None:
    """The console's 403 for non-administrators, then the user's (403 / 404, or ``cannot_act_on_self``: the same
    question the action's service asks), then "Confirm it's you"."""
    console_gate(ctx, session)
    user = user_admin.require_manager_of(ctx, username=username, actor=session.user, not_self=action.not_self)
    return confirm_if_needed(request, ctx, session, f"{user_path(user)}/{action.slug}")


@router.get(PREFIX + "/{username}/{slug}")
def action_page(request: Request, username: Username, slug: str, ctx: Services, session: PageSession) -> Response:
    action = _action_of(slug)
    if ask := _gate(request, ctx, session, username, action):
        return ask
    return _confirmation(request, ctx, session.user, action, username)


@router.post(PREFIX + "/{username}/{slug}")
def do_action(
    request: Request,
    username: Username,
    slug: str,
    form: CheckedForm,
    ctx: Services,
    session: PageSession,
    client: Client,
) -> Response:
    action = _action_of(slug)
    if ask := _gate(request, ctx, session, username, action):
        return ask
    entered = field(form, "reason", 4 * REASON_MAX_LENGTH)
    try:
        reason = clean_reason(entered)
    except InvalidInput as exc:
        failure = problem(exc, session.user.username)
        return _confirmation(
            request, ctx, session.user, action, username, status=status_for(exc), reason=entered, failure=failure
        )
    action.perform(ctx, username, session.user, client, reason)
    return redirect(user_path(username), action.notice)
