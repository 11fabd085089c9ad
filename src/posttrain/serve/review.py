"""The Review view: admins work through a pending gate's blind side-by-side pairs on the web page.

`GET /review` serves the page (no key needed: it asks for one, like the chat page, and every API
call it makes needs an admin key). The API under `/v1/gate/reviews` lists pending decisions,
shows one decision's pairs (never which side is the candidate), and records a reviewer's
verdicts through `posttrain.gate.submit_review`, which decides the gate once the review is
complete or vetoed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from posttrain.serve.auth import admin_user
from posttrain.serve.errors import ApiError
from posttrain.serve.web import TEMPLATES, Asset, _asset, _respond
from posttrain.store.users import UserInfo

router = APIRouter(tags=["gate review"])


@lru_cache(maxsize=1)
def _page() -> Asset:
    return _asset(TEMPLATES / "review.html", "text/html; charset=utf-8")


@router.api_route("/review", methods=["GET", "HEAD"], include_in_schema=False)
def review_page(request: Request) -> Response:
    """The Review view's HTML shell (everything dynamic comes from the API)."""
    return _respond(_page(), request)


def _blind(d: dict[str, Any], reviewer: str) -> dict[str, Any]:
    return {
        "id": d["id"], "status": d["status"], "candidate": d["candidate"], "baseline": d["baseline"],
        "created_at": d["created_at"],
        "already_reviewed": reviewer in {v["reviewer"] for v in d["verdicts"]},
        "items": [{"id": i["id"], "position": i["position"], "source": i["source"].split("/")[0],
                   "prompt": i["prompt"], "left": i["left_text"], "right": i["right_text"]} for i in d["items"]],
    }


@router.get("/v1/gate/reviews", summary="Gate decisions waiting for review (admin)")
async def pending(request: Request, admin: UserInfo = Depends(admin_user)) -> list[dict[str, Any]]:
    from posttrain.gate import list_decisions

    rows = await anyio.to_thread.run_sync(lambda: list_decisions(request.app.state.store, status="pending"))
    return [{k: r[k] for k in ("id", "candidate", "baseline", "created_at", "n_review_items")} for r in rows]


@router.get("/v1/gate/reviews/{decision_id}", summary="One pending decision's blind pairs (admin)")
async def show(decision_id: str, request: Request, admin: UserInfo = Depends(admin_user)) -> dict[str, Any]:
    from posttrain.store import gate as q

    try:
        d = await anyio.to_thread.run_sync(lambda: q.get_decision(request.app.state.store, decision_id))
    except KeyError as exc:
        raise ApiError(404, exc.args[0]) from None
    return _blind(d, admin.name)


@router.post("/v1/gate/reviews/{decision_id}/verdicts", status_code=201,
             summary="Record the caller's verdicts on a pending decision (admin)")
async def verdicts(decision_id: str, request: Request, body: dict[str, Any] = Body(...),
                   admin: UserInfo = Depends(admin_user)) -> dict[str, Any]:
    from posttrain.gate import submit_review
    from posttrain.store.gate import DecisionClosed

    items = body.get("verdicts") if isinstance(body, dict) else None
    try:
        r = await anyio.to_thread.run_sync(
            lambda: submit_review(request.app.state.store, decision_id, admin.name, items))
    except KeyError as exc:
        raise ApiError(404, exc.args[0]) from None
    except DecisionClosed as exc:
        raise ApiError(409, str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return {"decision_id": r["decision_id"], "status": r["status"], "passed": r["passed"],
            "review": {k: r["review"][k] for k in ("state", "required", "reviewers")}}
