"""Addresses nidan hands out to be opened elsewhere: its public base, and the one-time link to set a password."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request

#: The page a set-password link opens (``web/pages/setup.py``); the token rides in its query string.
SET_PASSWORD_PATH = "/set-password"  # noqa: S105 (a path, not a password)


def public_base(request: Request) -> str:
    """Where people and relying applications reach nidan: the configured public address, else the one this browser
    used.

    The fallback comes from the request's Host, shown only to the administrator whose browser sent it, in an answer
    no cache keeps (no-store): a forged Host can only mislead its own sender. Redirects never use it."""
    settings = getattr(request.app.state, "settings", None)
    public_url = settings.server.public_url if settings is not None else None
    base = public_url if isinstance(public_url, str) and public_url else str(request.base_url)
    return base.rstrip("/")


def set_password_url(request: Request, token: str) -> str:
    """The one-time link with which a new account's owner sets their password."""
    return f"{public_base(request)}{SET_PASSWORD_PATH}?{urlencode({'token': token})}"
