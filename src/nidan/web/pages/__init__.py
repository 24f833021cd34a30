"""Server-rendered pages (Jinja2, no build step, nothing from outside): sign-in, account security, first setup.

Faces rule: this package imports services and core types only. Every POST form is CSRF-checked
(``pages.csrf``); pages read the session from a cookie, which the REST API never accepts.
"""

from __future__ import annotations

from fastapi import APIRouter

from nidan.web.pages import (
    account,
    admin,
    admin_accounts,
    admin_orgs,
    admin_users,
    apps,
    auth,
    events,
    language,
    password_link,
    recover,
    security,
    setup,
    stepup,
    tokens,
)
from nidan.web.pages.rendering import render_error_page

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
router.include_router(security.router)
router.include_router(events.router)
router.include_router(setup.router)
router.include_router(recover.router)
router.include_router(password_link.router)
router.include_router(stepup.router)
router.include_router(tokens.router)
router.include_router(apps.router)
router.include_router(admin.router)
# Before admin_users: its /admin/users/{username}/{action} would take these pages' addresses.
router.include_router(admin_accounts.router)
router.include_router(admin_users.router)
router.include_router(admin_orgs.router)
router.include_router(language.router)
router.include_router(account.router)

__all__ = ["render_error_page", "router"]
