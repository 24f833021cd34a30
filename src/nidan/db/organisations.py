"""Queries for organisations, their members and their policies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nidan.core.models import Method, OrgRole
from nidan.core.organisations import DEFAULT_SLUG, Member, Membership, Organisation
from nidan.core.policy import OrgPolicy, TwoFactorPolicy
from nidan.db import tables as t
from nidan.db.dialects import take_sqlite_write_lock
from nidan.db.prepared import Prepared
from nidan.db.repositories import Repository, user_from_row
from nidan.errors import OrganisationExists


def _policy(row: Any) -> OrgPolicy:
    return OrgPolicy(
        two_factor=TwoFactorPolicy(row.two_factor_policy),
        grace_period_days=row.grace_period_days,
        allowed_methods=frozenset(Method(m) for m in row.allowed_methods.split() if m in _METHODS),
        tolerated_failures=row.tolerated_failures,
        remember_device_days=row.remember_device_days,
    )


_METHODS = {m.value for m in Method}
#: Built once (bound parameter): every sign-in reads the user's organisations' policies.
_MEMBERSHIPS_OF = Prepared(
    select(t.organisations, t.memberships.c.role.label("org_role"), t.memberships.c.managed)
    .join(t.memberships, t.memberships.c.organisation_id == t.organisations.c.id)
    .where(t.memberships.c.user_id == bindparam("user_id"))
    .order_by(t.organisations.c.slug)
)


def _organisation(row: Any, members: int = 0) -> Organisation:
    return Organisation(
        id=row.id, slug=row.slug, name=row.name, created_at=row.created_at, policy=_policy(row), members=members
    )


def _policy_values(policy: OrgPolicy) -> dict[str, Any]:
    return {
        "two_factor_policy": policy.two_factor.value,
        "grace_period_days": policy.grace_period_days,
        "allowed_methods": " ".join(m.value for m in Method if m in policy.allowed_methods),
        "tolerated_failures": policy.tolerated_failures,
        "remember_device_days": policy.remember_device_days,
    }


class SqlOrganisationRepository(Repository):
    DEFAULT_SLUG = DEFAULT_SLUG

    def default_id(self) -> int:
        query = select(t.organisations.c.id).where(t.organisations.c.slug == self.DEFAULT_SLUG)
        return int(self._c.execute(query).scalar_one())

    def add(self, slug: str, name: str, policy: OrgPolicy, at: datetime) -> Organisation:
        values = {"slug": slug, "name": name, "created_at": at, **_policy_values(policy)}
        try:
            row = self._c.execute(insert(t.organisations).values(**values).returning(*t.organisations.c)).one()
        except IntegrityError as exc:
            raise OrganisationExists() from exc
        return _organisation(row)

    def get_by_slug(self, slug: str) -> Organisation | None:
        o, m = t.organisations, t.memberships
        count = select(func.count()).where(m.c.organisation_id == o.c.id).scalar_subquery()
        row = self._c.execute(select(o, count.label("member_count")).where(o.c.slug == slug)).first()
        return _organisation(row, row.member_count) if row else None

    def list_all(self) -> Sequence[Organisation]:
        o, m = t.organisations, t.memberships
        count = select(func.count()).where(m.c.organisation_id == o.c.id).scalar_subquery()
        rows = self._c.execute(select(o, count.label("member_count")).order_by(o.c.slug))
        return [_organisation(row, row.member_count) for row in rows]

    def lock(self, organisation_id: int) -> None:
        """Serialise changes to the organisation's owners: two owners stepping down at once cannot both succeed."""
        organisations = t.organisations
        if self._c.dialect.name == "sqlite":
            take_sqlite_write_lock(self._c)  # no FOR UPDATE there
        else:
            self._c.execute(select(organisations.c.id).where(organisations.c.id == organisation_id).with_for_update())

    def restart_grace(self, organisation_id: int) -> int:
        """Forget the grace-period starts of the organisation's members: its requirement is new."""
        members = select(t.memberships.c.user_id).where(t.memberships.c.organisation_id == organisation_id)
        result = self._c.execute(
            update(t.users).where(t.users.c.id.in_(members)).values(two_factor_grace_started_at=None)
        )
        return result.rowcount

    def set_policy(self, organisation_id: int, policy: OrgPolicy) -> None:
        self._c.execute(
            update(t.organisations).where(t.organisations.c.id == organisation_id).values(**_policy_values(policy))
        )

    def add_member(
        self, organisation_id: int, user_id: int, role: OrgRole, at: datetime, *, managed: bool = True
    ) -> None:
        self._c.execute(
            insert(t.memberships).values(
                organisation_id=organisation_id, user_id=user_id, role=role.value, created_at=at, managed=managed
            )
        )

    def set_member(self, organisation_id: int, user_id: int, role: OrgRole, *, managed: bool) -> bool:
        m = t.memberships.c
        changed = self._c.execute(
            update(t.memberships)
            .where(m.organisation_id == organisation_id, m.user_id == user_id)
            .values(role=role.value, managed=managed)
        )
        return changed.rowcount == 1

    def remove_member(self, organisation_id: int, user_id: int) -> bool:
        m = t.memberships.c
        removed = self._c.execute(
            delete(t.memberships).where(m.organisation_id == organisation_id, m.user_id == user_id)
        )
        return removed.rowcount == 1

    def members(self, organisation_id: int) -> Sequence[Member]:
        m = t.memberships
        query = (
            select(t.users, m.c.role.label("org_role"), m.c.managed)
            .join(m, m.c.user_id == t.users.c.id)
            .where(m.c.organisation_id == organisation_id)
            .order_by(t.users.c.username_key)
        )
        return [Member(user_from_row(row), OrgRole(row.org_role), bool(row.managed)) for row in self._c.execute(query)]

    def memberships_of(self, user_id: int) -> Sequence[Membership]:
        return [
            Membership(_organisation(row), OrgRole(row.org_role), bool(row.managed))
            for row in _MEMBERSHIPS_OF.all(self._c, {"user_id": user_id})
        ]

    def policies_of(self, user_id: int) -> Sequence[tuple[OrgPolicy, OrgRole]]:
        return [(found.organisation.policy, found.role) for found in self.memberships_of(user_id)]
