"""Verify calls checked together: an application's key, and a counter of the shared transactions."""

from __future__ import annotations

from nidan.core.ports import SharedTransaction
from nidan.services import applications
from nidan.services.context import ServiceContext
from tests.web.verify_support import CLIENT


def api_key(ctx: ServiceContext, name: str = "wiki") -> str:
    return applications.add(ctx, name=name, actor=None, client=CLIENT).api_key


class Counted:
    """``ctx.shared``, counting the shared transactions opened."""

    def __init__(self, ctx: ServiceContext) -> None:
        assert ctx.shared is not None
        self.inner = ctx.shared
        self.opened = 0

    def __call__(self) -> SharedTransaction:
        self.opened += 1
        return self.inner()
