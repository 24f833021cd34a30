"""Who may act on whom, through the services that act (reset 2FA, ask to register again, look, clear a block), and
who may change an organisation's settings and members; on every configured database.

Instance administrators act on everyone. In an organisation, owners, admins and user_admins act on the members it
manages, never on outside collaborators, members of other organisations only, someone of a higher role there, or an
instance administrator. Only owners and admins change settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole, OrgRole, User
from nidan.core.policy import OrgPolicy, TwoFactorPolicy
from nidan.errors import CannotActOnSelf, LastOwner, NotPermitted
from nidan.services import organisations, signin, throttling, user_admin
from nidan.services.context import ServiceContext
from tests.conftest import BACKENDS, PostgresDatabases
from tests.helpers import code_at
from tests.integration.enforcement_support import (
    CLIENT,
    join,
    new_org,
    new_user,
    set_policy,
    shared_runtime,
    sign_in_fully,
    turn_on_totp,
)

OWNER, ADMIN, USER_ADMIN, MEMBER = OrgRole.OWNER, OrgRole.ADMIN, OrgRole.USER_ADMIN, OrgRole.MEMBER
OPTIONAL = TwoFactorPolicy.OPTIONAL


@dataclass
class World:
    """Organisation A and organisation B, and people in every position around them."""

    a: str
    b: str
    people: dict[str, User]


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Runtime]:
    yield from shared_runtime(request.param, tmp_path_factory, sqlite_template, postgres)


@pytest.fixture(scope="module")
def world(shared: Runtime) -> World:
    ctx = shared.services
    names = ["a_owner", "a_admin", "a_user_admin", "a_user_admin2", "a_member", "a_member2", "a_collaborator"]
    names += ["b_owner", "b_member", "nobody"]
    people = {name: new_user(ctx, name.replace("_", "-")) for name in names}
    people["instance_admin"] = new_user(ctx, "instance-admin", role=InstanceRole.ADMIN)
    a = new_org(ctx, owner=people["a_owner"])
    b = new_org(ctx, owner=people["b_owner"])
    join(ctx, a, people["a_admin"], ADMIN)
    join(ctx, a, people["a_user_admin"], USER_ADMIN)
    join(ctx, a, people["a_user_admin2"], USER_ADMIN)
    join(ctx, a, people["a_member"], MEMBER)
    join(ctx, a, people["a_member2"], MEMBER)
    join(ctx, a, people["a_collaborator"], MEMBER, managed=False)
    join(ctx, a, people["instance_admin"], MEMBER)  # a managed member of A, and yet above its managers
    join(ctx, b, people["b_member"], MEMBER)
    return World(a, b, people)


@pytest.fixture
def ctx(shared: Runtime) -> ServiceContext:
    return shared.services


# --- acting on users ---------------------------------------------------------------------------------------------

ALLOWED, REFUSED = True, False
USER_ACTIONS: list[tuple[str, str, bool]] = [
    # A user_admin of A: only over A's managed members of a lower role.
    ("a_user_admin", "a_member", ALLOWED),
    ("a_user_admin", "a_user_admin2", REFUSED),  # the same role: peers cannot reset each other
    ("a_user_admin", "b_member", REFUSED),  # a member of organisation B only
    ("a_user_admin", "nobody", REFUSED),  # in no organisation of theirs
    ("a_user_admin", "a_collaborator", REFUSED),  # an outside collaborator of A
    ("a_user_admin", "a_owner", REFUSED),  # a higher role
    ("a_user_admin", "a_admin", REFUSED),  # a higher role
    ("a_user_admin", "instance_admin", REFUSED),  # an instance administrator, though a member of A
    # An admin of A.
    ("a_admin", "a_user_admin", ALLOWED),
    ("a_admin", "a_member", ALLOWED),
    ("a_admin", "a_owner", REFUSED),
    ("a_admin", "a_collaborator", REFUSED),
    ("a_admin", "b_member", REFUSED),
    # The owner of A: GitLab's enterprise users only.
    ("a_owner", "a_admin", ALLOWED),
    ("a_owner", "a_member", ALLOWED),
    ("a_owner", "a_collaborator", REFUSED),
    ("a_owner", "b_member", REFUSED),
    ("a_owner", "b_owner", REFUSED),
    ("a_owner", "instance_admin", REFUSED),
    # The owner of B over their own, not over A's.
    ("b_owner", "b_member", ALLOWED),
    ("b_owner", "a_member", REFUSED),
    # A plain member has no authority.
    ("a_member", "a_member2", REFUSED),
    ("a_collaborator", "a_member", REFUSED),
    # An instance administrator acts on everyone.
    ("instance_admin", "b_member", ALLOWED),
    ("instance_admin", "a_collaborator", ALLOWED),
    ("instance_admin", "a_owner", ALLOWED),
    ("instance_admin", "nobody", ALLOWED),
]

Action = Callable[[ServiceContext, str, User | None], object]
ACTIONS: dict[str, Action] = {
    "reset_two_factor": lambda ctx, name, actor: user_admin.reset_two_factor(
        ctx, username=name, actor=actor, client=CLIENT, reason="test"
    ),
    "require_registration": lambda ctx, name, actor: user_admin.require_registration(
        ctx, username=name, actor=actor, client=CLIENT, reason="test"
    ),
    "overview": lambda ctx, name, actor: user_admin.overview(ctx, username=name, actor=actor),
    "clear_block": lambda ctx, name, actor: throttling.clear(ctx, username=name, actor=actor, client=CLIENT),
}


@pytest.mark.parametrize(("actor", "target", "allowed"), USER_ACTIONS, ids=[f"{a}-on-{t}" for a, t, _ in USER_ACTIONS])
def test_who_may_reset_whom(ctx: ServiceContext, world: World, actor: str, target: str, allowed: bool) -> None:
    acting, subject = world.people[actor], world.people[target].username
    if allowed:
        ACTIONS["reset_two_factor"](ctx, subject, acting)
    else:
        with pytest.raises(NotPermitted):
            ACTIONS["reset_two_factor"](ctx, subject, acting)
    assert (subject in {u.username for u in user_admin.managed_users(ctx, actor=acting)}) is allowed


#: The other actions ask the same rule: a few telling pairs each.
SAME_RULE = [
    ("a_user_admin", "a_member", ALLOWED),
    ("a_user_admin", "b_member", REFUSED),
    ("a_owner", "a_collaborator", REFUSED),
    ("a_user_admin", "a_admin", REFUSED),
    ("a_owner", "instance_admin", REFUSED),
    ("instance_admin", "b_member", ALLOWED),
]


@pytest.mark.parametrize("action", ["require_registration", "overview", "clear_block"])
def test_every_user_action_asks_the_same_rule(ctx: ServiceContext, world: World, action: str) -> None:
    for actor, target, allowed in SAME_RULE:
        acting, subject = world.people[actor], world.people[target].username
        if allowed:
            ACTIONS[action](ctx, subject, acting)
            continue
        with pytest.raises(NotPermitted):
            ACTIONS[action](ctx, subject, acting)


def test_the_command_line_acts_on_everyone(ctx: ServiceContext, world: World) -> None:
    for person in world.people.values():
        user_admin.require_registration(ctx, username=person.username, actor=None, client=CLIENT, reason=None)


@pytest.mark.parametrize("actor", ["a_user_admin", "a_owner", "instance_admin"])
@pytest.mark.parametrize("action", ["reset_two_factor", "require_registration"])
def test_nobody_resets_themselves(ctx: ServiceContext, world: World, actor: str, action: str) -> None:
    person = world.people[actor]
    with pytest.raises(CannotActOnSelf):
        ACTIONS[action](ctx, person.username, person)


def test_a_user_admin_cannot_unenroll_a_member_of_another_organisation(ctx: ServiceContext, world: World) -> None:
    actor = new_user(ctx, "ua")
    join(ctx, world.a, actor, USER_ADMIN)
    secret, _ = turn_on_totp(ctx, actor)
    target = new_user(ctx)
    join(ctx, world.b, target)
    turn_on_totp(ctx, target)
    signed_in = sign_in_fully(ctx, actor, secret)
    assert isinstance(signed_in, signin.Authenticated)
    session = signin.current_session(ctx, signed_in.session_token)
    with pytest.raises(NotPermitted):
        user_admin.unenroll(ctx, admin=session, username=target.username, totp_code=code_at(secret, ctx), client=CLIENT)


# --- an organisation's settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [
        ("a_owner", ALLOWED),
        ("a_admin", ALLOWED),
        ("instance_admin", ALLOWED),
        ("a_user_admin", REFUSED),  # manages members, not settings
        ("a_member", REFUSED),
        ("a_collaborator", REFUSED),
        ("b_owner", REFUSED),  # an owner elsewhere
    ],
)
def test_who_may_change_the_policy(ctx: ServiceContext, world: World, actor: str, allowed: bool) -> None:
    acting = world.people[actor]
    if allowed:
        set_policy(ctx, world.a, OPTIONAL, tolerated=0, actor=acting)
        set_policy(ctx, world.a, OPTIONAL, actor=acting)
        return
    with pytest.raises(NotPermitted):
        set_policy(ctx, world.a, OPTIONAL, tolerated=0, actor=acting)
    assert organisations.show(ctx, world.a, actor=None).organisation.policy.tolerated_failures is None


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [
        ("a_owner", ALLOWED),
        ("a_admin", ALLOWED),
        ("a_user_admin", ALLOWED),
        ("a_member", REFUSED),
        ("b_owner", REFUSED),
    ],
)
def test_who_may_see_the_members_and_the_preview(ctx: ServiceContext, world: World, actor: str, allowed: bool) -> None:
    acting = world.people[actor]
    if allowed:
        organisations.show(ctx, world.a, actor=acting)
        organisations.preview(ctx, world.a, OrgPolicy(TwoFactorPolicy.REQUIRED_FOR_ALL), actor=acting)
        return
    with pytest.raises(NotPermitted):
        organisations.show(ctx, world.a, actor=acting)
    with pytest.raises(NotPermitted):
        organisations.preview(ctx, world.a, OrgPolicy(TwoFactorPolicy.REQUIRED_FOR_ALL), actor=acting)


def test_only_instance_administrators_create_organisations(ctx: ServiceContext, world: World) -> None:
    with pytest.raises(NotPermitted):
        organisations.create(ctx, slug="by-an-owner", name="x", actor=world.people["a_owner"], client=CLIENT)
    made = organisations.create(ctx, slug="by-the-admin", name="x", actor=world.people["instance_admin"], client=CLIENT)
    assert made.slug == "by-the-admin"


# --- members and roles (each test on its own organisation) ---------------------------------------------------------


@dataclass
class Team:
    slug: str
    owner: User
    admin: User
    user_admin: User
    member: User


@pytest.fixture
def team(ctx: ServiceContext) -> Team:
    owner, admin, uadmin, member = (new_user(ctx, p) for p in ("owner", "admin", "uadmin", "member"))
    slug = new_org(ctx, owner=owner)
    join(ctx, slug, admin, ADMIN)
    join(ctx, slug, uadmin, USER_ADMIN)
    join(ctx, slug, member, MEMBER)
    return Team(slug, owner, admin, uadmin, member)


def role_of(ctx: ServiceContext, slug: str, user: User) -> OrgRole | None:
    members = organisations.show(ctx, slug, actor=None).members
    return next((m.member.role for m in members if m.member.user.id == user.id), None)


def change(
    ctx: ServiceContext, team: Team, user: User, role: OrgRole, actor: User | None, *, managed: bool = True
) -> None:
    organisations.change_member(
        ctx, team.slug, username=user.username, role=role, managed=managed, actor=actor, client=CLIENT
    )


def test_a_user_admin_manages_members_but_not_roles_above_their_own(ctx: ServiceContext, team: Team) -> None:
    newcomer = new_user(ctx)
    organisations.add_member(
        ctx, team.slug, username=newcomer.username, role=MEMBER, managed=False, actor=team.user_admin, client=CLIENT
    )
    change(ctx, team, newcomer, USER_ADMIN, team.user_admin, managed=False)
    for role in (ADMIN, OWNER):
        with pytest.raises(NotPermitted):
            change(ctx, team, newcomer, role, team.user_admin, managed=False)
        with pytest.raises(NotPermitted):
            organisations.add_member(
                ctx,
                team.slug,
                username=new_user(ctx).username,
                role=role,
                managed=False,
                actor=team.user_admin,
                client=CLIENT,
            )
    with pytest.raises(NotPermitted):
        change(ctx, team, team.admin, MEMBER, team.user_admin)
    with pytest.raises(NotPermitted):
        organisations.remove_member(ctx, team.slug, username=team.owner.username, actor=team.user_admin, client=CLIENT)
    organisations.remove_member(ctx, team.slug, username=newcomer.username, actor=team.user_admin, client=CLIENT)
    assert role_of(ctx, team.slug, newcomer) is None
    assert role_of(ctx, team.slug, team.admin) is ADMIN


def test_an_organisation_cannot_make_an_account_its_own(ctx: ServiceContext, team: Team) -> None:
    """Whether the organisation *manages* an account (and so may reset its 2FA) is not its own managers' call."""
    collaborator = new_user(ctx)
    join(ctx, team.slug, collaborator, MEMBER, managed=False)
    for actor in (team.owner, team.admin, team.user_admin):
        with pytest.raises(NotPermitted):
            change(ctx, team, collaborator, MEMBER, actor, managed=True)
        with pytest.raises(NotPermitted):
            user_admin.reset_two_factor(ctx, username=collaborator.username, actor=actor, client=CLIENT, reason=None)
    # An instance administrator may decide it; then the organisation's managers may help that user.
    change(ctx, team, collaborator, MEMBER, None, managed=True)
    user_admin.reset_two_factor(ctx, username=collaborator.username, actor=team.user_admin, client=CLIENT, reason=None)


def test_an_owner_manages_every_role(ctx: ServiceContext, team: Team) -> None:
    change(ctx, team, team.admin, OWNER, team.owner)
    change(ctx, team, team.user_admin, ADMIN, team.owner)
    assert role_of(ctx, team.slug, team.admin) is OWNER and role_of(ctx, team.slug, team.user_admin) is ADMIN


def test_an_admin_cannot_make_themselves_owner(ctx: ServiceContext, team: Team) -> None:
    """An admin ranks below the owner: taking the owner's role would be an escalation."""
    with pytest.raises(NotPermitted):
        change(ctx, team, team.admin, OWNER, team.admin)
    assert role_of(ctx, team.slug, team.admin) is ADMIN


def test_an_admin_cannot_make_someone_else_owner(ctx: ServiceContext, team: Team) -> None:
    with pytest.raises(NotPermitted):
        change(ctx, team, team.member, OWNER, team.admin)
    assert role_of(ctx, team.slug, team.member) is MEMBER


def test_an_admin_cannot_demote_an_owner(ctx: ServiceContext, team: Team) -> None:
    """Never on someone whose role there is above theirs (the authority module's own rule)."""
    co_owner = new_user(ctx, "coowner")
    join(ctx, team.slug, co_owner, OWNER)  # so the last-owner guard is not what stops it
    with pytest.raises(NotPermitted):
        change(ctx, team, co_owner, MEMBER, team.admin)
    assert role_of(ctx, team.slug, co_owner) is OWNER


def test_an_admin_cannot_remove_an_owner(ctx: ServiceContext, team: Team) -> None:
    co_owner = new_user(ctx, "coowner")
    join(ctx, team.slug, co_owner, OWNER)
    with pytest.raises(NotPermitted):
        organisations.remove_member(ctx, team.slug, username=co_owner.username, actor=team.admin, client=CLIENT)
    assert role_of(ctx, team.slug, co_owner) is OWNER


def test_a_user_admin_cannot_take_over_a_member_of_another_organisation(ctx: ServiceContext, world: World) -> None:
    """Adding someone else's member to one's own organisation as *managed* must not make them one's to reset
    (GitLab's enterprise users are the organisation's by the account's origin, not by an admin's say-so)."""
    actor = new_user(ctx, "ua")
    join(ctx, world.a, actor, USER_ADMIN)
    target = new_user(ctx)
    join(ctx, world.b, target)
    with contextlib.suppress(NotPermitted):
        organisations.add_member(
            ctx, world.a, username=target.username, role=MEMBER, managed=True, actor=actor, client=CLIENT
        )
    with pytest.raises(NotPermitted):
        user_admin.reset_two_factor(ctx, username=target.username, actor=actor, client=CLIENT, reason="takeover")


def test_the_last_owner_can_be_neither_demoted_nor_removed(ctx: ServiceContext, team: Team) -> None:
    for actor in (team.owner, None):
        with pytest.raises(LastOwner):
            change(ctx, team, team.owner, ADMIN, actor)
        with pytest.raises(LastOwner):
            organisations.remove_member(ctx, team.slug, username=team.owner.username, actor=actor, client=CLIENT)
    assert role_of(ctx, team.slug, team.owner) is OWNER
    # With a second owner, the first may step down.
    change(ctx, team, team.admin, OWNER, team.owner)
    change(ctx, team, team.owner, MEMBER, team.owner)
    assert role_of(ctx, team.slug, team.owner) is MEMBER
    with pytest.raises(LastOwner):
        organisations.remove_member(ctx, team.slug, username=team.admin.username, actor=None, client=CLIENT)
