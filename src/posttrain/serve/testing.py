"""Helpers for driving the server in-process (tests, notebooks, other parts' integration tests).

    env = make_env(store, tiny_model_dir)      # app + three users (alice, bob, admin)
    with env.client("alice") as c:              # a starlette TestClient with alice's key
        c.post("/v1/chat/completions", json={...})

The app, the store and its writer thread are the real ones; only the network is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from posttrain.serve.app import create_app
from posttrain.store._store import Store
from posttrain.store.users import UserInfo, add_user

TINY = "tiny"


def register_tiny(store: Store, model_dir: Path | str, name: str = TINY) -> None:
    """Register a local checkpoint folder (e.g. the tiny random test model) under `name`."""
    from posttrain.models.registry import list_models, register_model

    if name not in {m.name for m in list_models(store)}:
        register_model(store, name, "local", {"path": str(model_dir)})


@dataclass
class ServerEnv:
    store: Store
    app: FastAPI
    keys: dict[str, str] = field(default_factory=dict)
    users: dict[str, UserInfo] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def client(self, who: str | None = None) -> Any:
        """A TestClient (use as a context manager) sending `who`'s key, or no key."""
        from fastapi.testclient import TestClient

        return TestClient(self.app, headers=self.headers(who) if who else {}, raise_server_exceptions=False)

    def aclient(self, who: str | None = None) -> Any:
        """An httpx.AsyncClient over the ASGI app (for concurrent requests)."""
        import httpx

        return httpx.AsyncClient(
            transport=httpx.ASGITransport(self.app, raise_app_exceptions=False),
            base_url="http://posttrain.test", headers=self.headers(who) if who else {}, timeout=120,
        )


def make_env(store: Store, model_dir: Path | str | None = None, default_model: str = TINY, **app_options: Any) -> ServerEnv:
    """An app on `store` with users alice, bob (not admins) and admin; registers the tiny model
    when `model_dir` is given and makes it the default. `app_options` go to create_app
    (limits, system_prompt, docs, auth_failures_per_minute)."""
    from posttrain.models.registry import ensure_default_models

    ensure_default_models(store)
    if model_dir is not None:
        register_tiny(store, model_dir)
    env = ServerEnv(store=store, app=create_app(store, default_model=default_model, **app_options))
    for name, admin in (("alice", False), ("bob", False), ("admin", True)):
        user, key = add_user(store, name, admin=admin)
        env.users[name], env.keys[name] = user, key
    return env


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a daemon thread; yields its base URL
    (``http://127.0.0.1:PORT``). For tests that need real sockets: disconnects, header limits,
    what the server logs."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="posttrain-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
