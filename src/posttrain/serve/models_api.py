"""GET /v1/models and GET /v1/models/{id}: the model registry in OpenAI's format (the SDK's
`models.list()` and `models.retrieve()`)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request

from posttrain.serve.auth import current_user
from posttrain.serve.errors import ApiError
from posttrain.store.users import UserInfo

router = APIRouter(tags=["chat"])


def _entry(m: Any, default: str) -> dict[str, Any]:
    return {
        "id": m.name, "object": "model",
        "created": int(m.created_at.timestamp()) if m.created_at else 0,
        "owned_by": "posttrain", "backend": m.backend, "parent": m.parent,
        "default": m.name == default,
    }


@router.get("/v1/models", summary="Registered models (OpenAI list format)")
async def models(request: Request, user: UserInfo = Depends(current_user)) -> dict[str, Any]:
    from posttrain.models.registry import list_models

    infos = await anyio.to_thread.run_sync(list_models, request.app.state.store)
    return {"object": "list", "data": [_entry(m, request.app.state.default_model) for m in infos]}


@router.get("/v1/models/{model_id:path}", summary="One registered model (OpenAI model object)",
            responses={404: {"description": "no model of that name"}})
async def model(request: Request, model_id: str = Path(max_length=200),
                user: UserInfo = Depends(current_user)) -> dict[str, Any]:
    from posttrain.models.registry import get_model

    try:
        m = await anyio.to_thread.run_sync(get_model, request.app.state.store, model_id)
    except KeyError:
        raise ApiError(404, f"model {model_id!r} not found; GET /v1/models lists the registered models") from None
    return _entry(m, request.app.state.default_model)
