"""API tokens: issue, list and revoke (admin role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from api.deps import SessionDep, authorize_admin
from api.params import StoredInt
from api.schemas import ErrorOut, TokenCreate, TokenCreated, TokenOut
from sweep.service import tokens

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[Depends(authorize_admin)])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, session: SessionDep, response: Response) -> TokenCreated:
    """Issue a token; its secret is in this response only."""
    expires_in = tokens.parse_duration(body.expires_in) if body.expires_in else None
    issued = tokens.create_token(session, body.role, name=body.name, expires_in=expires_in)
    response.headers["Cache-Control"] = "no-store"
    return TokenCreated(**TokenOut.from_info(issued.info).model_dump(), token=issued.secret)


@router.get("", response_model=list[TokenOut])
def list_tokens(session: SessionDep) -> list[TokenOut]:
    """Every token, oldest first, without secrets."""
    return [TokenOut.from_info(info) for info in tokens.list_tokens(session)]


@router.delete("/{token_id}", response_model=TokenOut, responses={404: {"model": ErrorOut}})
def revoke_token(token_id: Annotated[StoredInt, Path(ge=1)], session: SessionDep) -> TokenOut:
    """Revoke a token for good: requests with it get 401 from now on."""
    return TokenOut.from_info(tokens.revoke_token(session, token_id))
