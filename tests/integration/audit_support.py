"""The security log's records as the tests read them, and a few events to fill it."""

from __future__ import annotations

from nidan.bootstrap import Runtime
from nidan.core.audit import AuditRecord, EventType
from nidan.core.models import ClientInfo
from nidan.services import audit

CLIENT = ClientInfo(ip="198.51.100.4", user_agent="pytest-agent/1.0", correlation_id="corr-1234")


def all_records(runtime: Runtime) -> list[AuditRecord]:
    with runtime.services.uow() as uow:
        return list(uow.audit.iterate(batch_size=7))


def some_events(runtime: Runtime, count: int = 5) -> None:
    """``count`` events, committed one transaction each."""
    ctx = runtime.services
    for n in range(count):
        with ctx.uow() as uow:
            audit.record(ctx, uow, EventType.STEP_UP_FAILED, client=CLIENT, actor=None, subject=None, details={"n": n})
            uow.commit()
        ctx.clock.advance(1)  # type: ignore[attr-defined]
