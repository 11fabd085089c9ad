"""Online A/B experiments: sticky routing on the live server, per-arm metrics with always-valid
confidence sequences, detector guardrails with automatic rollback, promote/rollback at once.

    route(store, user_id, requested_model) -> (model, assignment | None)   # the chat hook
    start(store, name, baseline=, candidate=, fraction=) · status(store, name)
    promote(store, name) · rollback(store, name) · stop(store, name) · list_all(store)

Only the routing is imported eagerly: the chat server needs nothing else (no numpy).
"""

from typing import Any

from posttrain.experiments._routing import bucket, invalidate, route

_LAZY = {
    "get": "_manage", "list_all": "_manage", "promote": "_manage", "rollback": "_manage",
    "start": "_manage", "status": "_manage", "stop": "_manage",
    "diff_interval": "_sequential", "mixture_halfwidth": "_sequential", "simulate_null": "_sequential",
}

__all__ = ["bucket", "invalidate", "route", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"posttrain.experiments.{_LAZY[name]}"), name)
    raise AttributeError(name)
