"""The security event log: recording events inside a use case's unit of work, reading them, checking the chain.

``record`` is called by other services inside their own unit of work, last, right before ``uow.commit()``: the event
is then stored exactly when the action it records is, and the chain-head lock it takes is held only briefly.
Details never carry a secret (a recovery code's position, never the code; a session's id, never its token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from nidan.core.audit import (
    AuditEvent,
    AuditQuery,
    AuditRecord,
    ChainHead,
    ChainProblem,
    Detail,
    EventType,
    checked_details,
    export_line,
    verify_chain,
)
from nidan.core.models import ClientInfo, User
from nidan.core.ports import UnitOfWork
from nidan.core.usernames import username_key, username_problem
from nidan.errors import InvalidInput
from nidan.services.context import ServiceContext
from nidan.texts import _

#: The most events one page of a listing returns.
MAX_PAGE = 200
DEFAULT_PAGE = 50


def _clip(value: str | None, length: int) -> str | None:
    """Fit a column: the event is hashed as stored, so it is cut before hashing, never by the database."""
    return value[:length] if value else None


#: The longest reason an administrator may give for an action (it is kept in the audit log).
MAX_REASON = 200


def checked_reason(reason: str | None) -> str | None:
    """An administrator's reason, tidied; too long or with control characters is a clear 422, not a crash."""
    if reason is None:
        return None
    cleaned = " ".join(reason.split())
    if len(cleaned) > MAX_REASON or not cleaned.isprintable():
        raise InvalidInput(_("Give the reason in at most %(max)d characters, on one line.", max=MAX_REASON))
    return cleaned or None


def record(
    ctx: ServiceContext,
    uow: UnitOfWork,
    event_type: EventType,
    *,
    client: ClientInfo | None,
    actor: User | None,
    subject: User | None,
    details: Mapping[str, Detail] | None = None,
) -> AuditRecord:
    """Append one event to the chain in ``uow`` (the caller commits). ``actor`` is who did it (``None``: the
    command line, or someone not signed in); ``subject`` is whose account it concerns."""
    client = client or ClientInfo()
    event = AuditEvent(
        occurred_at=ctx.clock.now(),
        event_type=EventType(event_type).value,
        actor_user_id=actor.id if actor else None,
        actor_username=_clip(actor.username, 64) if actor else None,
        subject_user_id=subject.id if subject else None,
        subject_username=_clip(subject.username, 64) if subject else None,
        client_ip=_clip(client.ip, 64),
        user_agent=_clip(client.user_agent, 512),
        correlation_id=_clip(client.correlation_id, 64),
        details=checked_details(details),
    )
    return uow.audit.append(event)


def _page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(_("limit is 1 to %(max)d.", max=MAX_PAGE))
    return limit


def my_events(
    ctx: ServiceContext, user_id: int, *, limit: int = DEFAULT_PAGE, before: int | None = None
) -> Sequence[AuditRecord]:
    """The user's own security log, newest first: events about their account or done by them."""
    with ctx.uow() as uow:
        return uow.audit.list_for_user(user_id, limit=_page_size(limit), before_seq=before)


def all_events(
    ctx: ServiceContext,
    *,
    username: str | None = None,
    event_type: EventType | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_PAGE,
    before: int | None = None,
) -> Sequence[AuditRecord]:
    """Everyone's events for administrators, newest first. ``username`` matches the subject or the actor (by the
    name recorded, so events of a renamed or removed account are still found); ``until`` is exclusive."""
    if since is not None and until is not None and since >= until:
        raise InvalidInput(_("'since' must be earlier than 'until'."))
    key = None
    if username is not None:
        key = username_key(username)
        if key is None:
            raise InvalidInput(username_problem(username))
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
        query = AuditQuery(
            user_id=user.id if user else None,
            username=key if key and user is None else None,
            event_type=event_type.value if event_type else None,
            since=since,
            until=until,
            before_seq=before,
            limit=_page_size(limit),
        )
        return uow.audit.search(query)


@dataclass(frozen=True, slots=True)
class ChainVerification:
    events: int
    head: ChainHead
    #: The first place the chain breaks; ``None`` when it is intact.
    problem: ChainProblem | None

    @property
    def intact(self) -> bool:
        return self.problem is None


class _Counted:
    def __init__(self, records: Iterator[AuditRecord]) -> None:
        self._records = records
        self.count = 0

    def __iter__(self) -> Iterator[AuditRecord]:
        for item in self._records:
            self.count += 1
            yield item


def verify(ctx: ServiceContext) -> ChainVerification:
    """Walk the whole chain from genesis and compare its end with the head row."""
    with ctx.uow() as uow:
        # The head first: every event up to it is committed, and later appends chain on from it.
        head = uow.audit.head()
        counted = _Counted(uow.audit.iterate())
        problem = verify_chain(counted, head)
    return ChainVerification(events=counted.count, head=head, problem=problem)


def export(ctx: ServiceContext, write_line: Callable[[str], None]) -> int:
    """Hand every event, oldest first, to ``write_line`` as one JSON Lines line (no newline); returns the count."""
    count = 0
    with ctx.uow() as uow:
        for item in uow.audit.iterate():
            write_line(export_line(item))
            count += 1
    return count
