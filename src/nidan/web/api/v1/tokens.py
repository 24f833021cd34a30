"""The signed-in user's personal access tokens and app passwords: create (shown once), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from nidan.core.access_tokens import NAME_MAX_LENGTH, AccessToken, Scope, TokenKind
from nidan.services import tokens
from nidan.services.tokens import CreatedToken
from nidan.web.api.v1.schemas import INVISIBLE_REFUSED, MAX_INT4, NOT_BLANK_LINE_PATTERN, IsoDate, documented_pattern
from nidan.web.deps import Client, RecentlyVerified, Services, SignedIn
from nidan.web.openapi import errors_documented

router = APIRouter(prefix="/api/v1/me", tags=["access tokens"])

EXPIRY_HELP = (
    "The day it stops working (00:00 UTC). Optional: without one it expires at the longest lifetime the instance "
    "allows (default 365 days). A date that is not after today (UTC), or past that longest lifetime, is refused "
    "with 422 `invalid_request`: a rule about today, which a schema cannot state."
)
NAME_HELP = f"Printable, on one line, at most {NAME_MAX_LENGTH} characters. {INVISIBLE_REFUSED}"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(_Request):
    name: str = Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        description=f"What it is for, e.g. 'laptop git'. {NAME_HELP}",
        json_schema_extra=documented_pattern(NOT_BLANK_LINE_PATTERN),
    )
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_at: IsoDate | None = Field(default=None, description=EXPIRY_HELP)


class AppPasswordRequest(_Request):
    name: str = Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        description=f"The client, e.g. 'Thunderbird'. {NAME_HELP}",
        json_schema_extra=documented_pattern(NOT_BLANK_LINE_PATTERN),
    )
    expires_at: IsoDate | None = Field(default=None, description=EXPIRY_HELP)


class TokenOut(BaseModel):
    id: int
    name: str
    kind: TokenKind
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute.")
    expired: bool


class CreatedTokenOut(BaseModel):
    id: int
    token: str = Field(description="The secret. It is shown only this once: store it now.")
    name: str
    kind: TokenKind
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None


class TokenListOut(BaseModel):
    tokens: list[TokenOut]


TokenId = Annotated[
    int, Path(ge=1, le=MAX_INT4, description="The token's id (access_tokens.id, an int4).", examples=[1])
]


def _created(created: CreatedToken) -> CreatedTokenOut:
    token = created.token
    return CreatedTokenOut(
        id=token.id,
        token=created.secret,
        name=token.name,
        kind=token.kind,
        scopes=list(token.scopes),
        created_at=token.created_at,
        expires_at=token.expires_at,
    )


def _listed(token: AccessToken, now: datetime) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        kind=token.kind,
        scopes=list(token.scopes),
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        expired=token.expired(now),
    )


STEP_UP = (
    "Needs a recent verification (403 `reauthentication_required`: confirm at POST /api/v1/auth/reauth). The "
    "secret is in this answer only; nidan keeps a keyed hash of it."
)


@router.post(
    "/tokens",
    status_code=201,
    response_model=CreatedTokenOut,
    responses=errors_documented(401, 403, 409, 422),
    summary="Create a personal access token (for Git, registries, scripts)",
    description=STEP_UP,
)
def create_token(body: TokenRequest, ctx: Services, session: RecentlyVerified, client: Client) -> CreatedTokenOut:
    created = tokens.create(
        ctx,
        session.user,
        kind=TokenKind.PERSONAL,
        name=body.name,
        scopes=[s.value for s in body.scopes],
        expires_on=body.expires_at,
        client=client,
    )
    return _created(created)


@router.post(
    "/app-passwords",
    status_code=201,
    response_model=CreatedTokenOut,
    responses=errors_documented(401, 403, 409, 422),
    summary="Create an app password (every non-admin scope, for clients that cannot be told one)",
    description=STEP_UP,
)
def create_app_password(
    body: AppPasswordRequest, ctx: Services, session: RecentlyVerified, client: Client
) -> CreatedTokenOut:
    created = tokens.create(
        ctx,
        session.user,
        kind=TokenKind.APP_PASSWORD,
        name=body.name,
        scopes=None,
        expires_on=body.expires_at,
        client=client,
    )
    return _created(created)


@router.get(
    "/tokens",
    response_model=TokenListOut,
    responses=errors_documented(401),
    summary="My access tokens and app passwords (never the secrets), newest first",
)
def list_tokens(ctx: Services, session: SignedIn) -> TokenListOut:
    now = ctx.clock.now()
    return TokenListOut(tokens=[_listed(t, now) for t in tokens.list_tokens(ctx, session.user)])


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    responses=errors_documented(401, 404, 422),
    summary="Revoke one of my access tokens or app passwords (it stops working at once)",
)
def revoke_token(token_id: TokenId, ctx: Services, session: SignedIn, client: Client) -> Response:
    tokens.revoke(ctx, session.user, token_id, client=client)
    return Response(status_code=204)
