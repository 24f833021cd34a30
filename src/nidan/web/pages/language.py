"""The footer's language switcher: ``GET /language?lang=ja&next=/security`` remembers the choice in a cookie."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from nidan.services import accounts
from nidan.texts import LOCALES
from nidan.web.deps import Client, Services
from nidan.web.i18n import LANG_COOKIE
from nidan.web.pages import cookies
from nidan.web.pages.cookies import is_secure
from nidan.web.pages.rendering import redirect

router = APIRouter(include_in_schema=False)

#: A year: a language is a lasting choice.
LANG_COOKIE_SECONDS = 365 * 24 * 3600
#: Where the switcher may send the browser back to: a local path of letters, digits and ``/-_.`` (no query, so
#: nothing a link could smuggle in comes back).
_LOCAL_PATH = re.compile(r"/[A-Za-z0-9/_.\-]*")


@router.get("/language")
def choose_language(
    request: Request,
    ctx: Services,
    client: Client,
    lang: Annotated[str, Query(max_length=8)] = "",
    next_path: Annotated[str, Query(alias="next", max_length=256)] = "/",
) -> Response:
    target = next_path if _LOCAL_PATH.fullmatch(next_path) and not next_path.startswith("//") else "/"
    response = redirect(target)
    if lang in LOCALES:
        # A signed-in person's stored choice comes first: the switcher changes it too, or it would seem not to work.
        current = cookies.signed_in_user(request, ctx)
        if current is not None and current.user.locale not in (None, lang):
            accounts.set_preferences(ctx, current.user, locale=lang, time_zone=current.user.time_zone, client=client)
        response.set_cookie(
            LANG_COOKIE, lang, max_age=LANG_COOKIE_SECONDS, path="/", secure=is_secure(request), samesite="lax"
        )
    return response
