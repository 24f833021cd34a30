"""Break-glass: the one-time link ``nidan admin recover`` printed leads an administrator into setting up 2FA again.

Opening the link (GET) changes nothing, so a mail scanner or link preview cannot spend it; the button (a
CSRF-checked POST) spends it and starts a sign-in that may only set up 2FA.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from nidan.services import break_glass
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import redirect, render

router = APIRouter(include_in_schema=False)


@router.get("/recover")
def recover_page(request: Request, ctx: Services, token: str = "") -> Response:
    break_glass.check_link(ctx, token)
    # The token rides on in a hidden field, never in the form's address; Referrer-Policy keeps it off other sites.
    return render(request, "recover.html", token=token)


@router.post("/recover")
def redeem(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    started = break_glass.redeem(ctx, token=field(form, "token", 256), client=client)
    # The setup page says how this sign-in began: with the link, not with a password.
    response = redirect("/security/setup?via=recovery_link")
    cookies.set_session(request, response, ctx, started.setup_token)
    return response
