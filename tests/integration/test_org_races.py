"""Organisations and enforcement under concurrency (threads on one engine pool), on every configured database:
an organisation never loses its last owner, and one setup_token opens at most one full session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from nidan.bootstrap import Runtime
from nidan.core.models import OrgRole, User
from nidan.core.policy import TwoFactorPolicy
from nidan.errors import AuthenticationRequired, InvalidCode, LastOwner, NotPermitted, TotpEnrollmentNotStarted
from nidan.services import enrollment, organisations, signin
from nidan.services.context import ServiceContext
from tests import helpers
from tests.conftest import BACKENDS, PostgresDatabases
from tests.helpers import code_at
from tests.integration.enforcement_support import CLIENT, join, new_org, new_user, shared_runtime, sign_in

ROUNDS = 3


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Runtime]:
    """One database per back end for the module: each test makes its own users and organisations."""
    yield from shared_runtime(request.param, tmp_path_factory, sqlite_template, postgres)


def owners(ctx: ServiceContext, slug: str) -> list[str]:
    members = organisations.show(ctx, slug, actor=None).members
    return [m.member.user.username for m in members if m.member.role is OrgRole.OWNER]


def demote(ctx: ServiceContext, slug: str, who: User, by: User) -> None:
    organisations.change_member(
        ctx, slug, username=who.username, role=OrgRole.ADMIN, managed=True, actor=by, client=CLIENT
    )


def test_two_owners_demoting_each_other_at_once_leave_an_owner(shared: Runtime) -> None:
    ctx = shared.services
    for _ in range(ROUNDS):
        first, second = new_user(ctx, "owner"), new_user(ctx, "owner")
        slug = new_org(ctx, owner=first)
        join(ctx, slug, second, OrgRole.OWNER)
        pairs = [(second, first), (first, second)]
        # The second to run finds itself no longer an owner (not_permitted) or the other one the last (last_owner).
        results = helpers.race(2, lambda i, s=slug, p=pairs: demote(ctx, s, *p[i]), (LastOwner, NotPermitted))
        assert sum(r is None for r in results) <= 1, results
        assert len(owners(ctx, slug)) == 1


def test_owners_stepping_down_at_once_leave_exactly_one(shared: Runtime) -> None:
    ctx = shared.services
    for _ in range(ROUNDS):
        team = [new_user(ctx, "owner") for _ in range(5)]
        slug = new_org(ctx, owner=team[0])
        for person in team[1:]:
            join(ctx, slug, person, OrgRole.OWNER)
        results = helpers.race(len(team), lambda i, t=team, s=slug: demote(ctx, s, t[i], t[i]), (LastOwner,))
        assert Counter(type(r).__name__ for r in results) == Counter({"NoneType": 4, "LastOwner": 1})
        assert len(owners(ctx, slug)) == 1


def test_two_owners_removing_each_other_at_once_leave_an_owner(shared: Runtime) -> None:
    ctx = shared.services
    for _ in range(ROUNDS):
        first, second = new_user(ctx, "owner"), new_user(ctx, "owner")
        slug = new_org(ctx, owner=first)
        join(ctx, slug, second, OrgRole.OWNER)
        pairs = [(second, first), (first, second)]

        def remove(index: int, slug: str = slug, pairs: list[tuple[User, User]] = pairs) -> None:
            who, by = pairs[index]
            organisations.remove_member(ctx, slug, username=who.username, actor=by, client=CLIENT)

        # The loser is refused as the last owner, or, if the winner removed them first, as no longer a member.
        results = helpers.race(2, remove, (LastOwner, NotPermitted))
        assert sum(r is None for r in results) <= 1, results
        assert len(owners(ctx, slug)) == 1


def test_one_setup_token_opens_at_most_one_full_session(shared: Runtime) -> None:
    ctx = shared.services
    user = new_user(ctx)
    join(ctx, new_org(ctx, TwoFactorPolicy.REQUIRED_FOR_ALL), user)
    setup = sign_in(ctx, user)
    assert isinstance(setup, signin.SetupRequired)
    session = signin.current_session(ctx, setup.setup_token)
    secret = enrollment.start_totp(ctx, session.user).secret

    def activate(_: int) -> str:
        enrollment.activate_totp(ctx, session.user, code_at(secret, ctx), client=CLIENT)
        return signin.finish_enrolment(ctx, session, CLIENT).session_token

    results = helpers.race(4, activate, (AuthenticationRequired, InvalidCode, TotpEnrollmentNotStarted))
    tokens = [r for r in results if isinstance(r, str)]
    assert len(tokens) == 1, results
    signin.full_session(ctx, tokens[0])
    with pytest.raises(AuthenticationRequired):
        signin.current_session(ctx, setup.setup_token)
