"""Admin views: the arena leaderboard (with an interval plot), the usefulness-beside-engagement
dashboard, and the A/B experiments.

`GET /admin` serves the page shell (no key needed: like the chat page it asks for one, and every
API call it makes needs an admin key). The data comes from `/v1/admin/leaderboard`,
`/v1/admin/stats` and `/v1/admin/experiments`, the same shapes as `posttrain arena fit --json`,
`posttrain stats --json` and `posttrain ab status --json`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from posttrain.serve.auth import admin_user
from posttrain.serve.web import TEMPLATES, Asset, _asset, _respond
from posttrain.store.users import UserInfo

router = APIRouter(tags=["admin views"])


@lru_cache(maxsize=1)
def _page() -> Asset:
    return _asset(TEMPLATES / "admin.html", "text/html; charset=utf-8")


@router.api_route("/admin", methods=["GET", "HEAD"], include_in_schema=False)
def admin_page(request: Request) -> Response:
    """The admin views' HTML shell (everything dynamic comes from the API)."""
    return _respond(_page(), request)


@router.get("/v1/admin/leaderboard", summary="Arena leaderboard from the store's pairwise votes (admin)")
async def leaderboard(request: Request, rounds: int = 100, _admin: UserInfo = Depends(admin_user)) -> dict[str, Any]:
    from posttrain.arena import fit, model_record, record_models, votes_from_store

    store = request.app.state.store
    rounds = max(1, min(rounds, 1000))

    def run() -> dict[str, Any]:
        votes = votes_from_store(store)
        if not votes:
            return {"models": [], "record": model_record(store, {}), "votes": 0,
                    "note": "no pairwise votes between two different models yet"}
        result = fit(votes, rounds=rounds, style=True)
        result["record"] = record_models(store, result, source="admin view")
        return result

    return await anyio.to_thread.run_sync(run)


@router.get("/v1/admin/stats", summary="Usefulness beside engagement, per model and week (admin)")
async def stats(request: Request, weeks: int | None = None, _admin: UserInfo = Depends(admin_user)) -> dict[str, Any]:
    from posttrain.experiments._stats import dashboard

    return await anyio.to_thread.run_sync(lambda: dashboard(request.app.state.store, weeks=weeks))


@router.get("/v1/admin/experiments", summary="A/B experiments with their per-arm metrics (admin)")
async def experiments(request: Request, _admin: UserInfo = Depends(admin_user)) -> list[dict[str, Any]]:
    from posttrain.experiments import list_all, status

    store = request.app.state.store

    def run() -> list[dict[str, Any]]:
        return [status(store, e["name"], check=False) for e in list_all(store)]

    return await anyio.to_thread.run_sync(run)
