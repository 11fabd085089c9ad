"""The posttrain server: an OpenAI-compatible chat API that logs every exchange, a feedback API,
per-user personalization, and the web page.

    app = create_app(Store.open(url))          # in-process (tests, embedding)
    serve("127.0.0.1", 8000, db=url)           # what `posttrain serve` runs
    serve("0.0.0.0", 8000, db=url, workers=2)  # `posttrain serve --workers 2` (serve/workers.py)

Each server process has one event loop: handlers are async, model generation and database reads
run in worker threads, and every write goes through the store's group-commit writer (a 2xx is
sent only after its write is committed). Several processes (and hosts) may serve one store.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI

from posttrain.feedback.service import FeedbackService
from posttrain.serve import admin, chat, conversations, errors, feedback_api, models_api, personal
from posttrain.serve.auth import AuthFailures, KeyCache
from posttrain.serve.exchange_log import ExchangeLog
from posttrain.serve.personal import PersonalizationCache
from posttrain.serve.scheduler import Limits, Scheduler
from posttrain.store._store import Store

__all__ = ["DEFAULT_SYSTEM_PROMPT", "Limits", "create_app", "prepare_model", "serve"]

DEFAULT_MODEL = "smollm2-135m"
# Sent as the system message of every conversation that has none (see docs/serve.md, "The
# stored prompt"): the chat template then adds no default of its own, so the stored prompt is
# exactly what the model saw. `posttrain serve --system-prompt` changes it ("" is allowed).
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# Threads for non-streaming generations. The local backend serializes its own work (one lock),
# so extra threads only wait there; an OpenAI-compatible backend is I/O-bound, and a pool smaller
# than the requests in flight would queue them (8 threads halved proxy throughput at 16 clients).
GENERATION_THREADS = 64
log = logging.getLogger("posttrain.serve")


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    from posttrain.models.openai_http import aclose_sessions

    await aclose_sessions()  # the upstream connections opened on this loop (serve/generation.py)


def create_app(store: Store, default_model: str = DEFAULT_MODEL, *, limits: Limits | None = None,
               system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, docs: bool = False,
               auth_failures_per_minute: int = 30) -> FastAPI:
    """The FastAPI app over `store` (already migrated). `default_model` answers requests that
    name no model; `limits` are the per-user generation limits (scheduler.Limits);
    `system_prompt` is sent when a conversation has no system message (None: send nothing and
    let the chat template decide); `docs` serves Swagger UI at /docs (it loads its assets from a
    CDN, so it is off by default); `auth_failures_per_minute` bounds failed key checks per
    client address (0: no bound). The app does not close the store: its opener does."""
    app = FastAPI(
        title="posttrain",
        summary="Chat with logging, feedback capture and personalization (OpenAI-compatible).",
        version="0.1",
        # Public on purpose: it describes the API, holds no data, and OpenAI-style tooling reads it.
        openapi_url="/openapi.json",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        # Plain `curl -d '{...}'` sends no JSON content type; parse the body as JSON anyway.
        strict_content_type=False,
        lifespan=_lifespan,
    )
    # `/v1/models/` must not redirect to `/v1/models`: the redirect copied the request's Host
    # header into Location (an open redirect); API paths are exact.
    app.router.redirect_slashes = False
    app.state.store = store
    app.state.default_model = default_model
    app.state.system_prompt = system_prompt
    app.state.scheduler = Scheduler(limits)
    app.state.auth_failures = AuthFailures(auth_failures_per_minute)
    app.state.keys = KeyCache(store)
    app.state.feedback = FeedbackService(store)
    app.state.exchanges = ExchangeLog(store)
    app.state.personalization = PersonalizationCache(store)
    # Imported at start-up, before serve() freezes what is loaded (gc.freeze), not by the first
    # proxied request: at --workers 2, two alternating pairs gave a p99 of 379/486 ms imported
    # lazily, 126/263 ms imported here (BENCHMARKS.md, chat proxy, third round).
    import aiohttp  # noqa: F401  (models/openai_http.py: agenerate)

    app.state.generation_pool = ThreadPoolExecutor(max_workers=GENERATION_THREADS, thread_name_prefix="posttrain-gen")
    errors.install(app)

    # Set by serve() while the default model's weights load in the background; None: not tracked.
    app.state.model_ready = None

    @app.get("/healthz", tags=["health"], summary="Liveness and default-model readiness (no key needed)")
    async def healthz() -> dict[str, str]:
        ready = app.state.model_ready
        return {"status": "ok", "model": "loading" if ready is not None and not ready.is_set() else "ready"}

    for module in (chat, models_api, feedback_api, conversations, personal, admin):
        app.include_router(module.router)
    try:
        from posttrain.serve.web import router as web_router
    except ImportError:  # the web page is optional (e.g. a headless install)
        web_router = None
    if web_router is not None:
        app.include_router(web_router)
        from posttrain.serve.review import router as review_router  # the gate's Review view

        app.include_router(review_router)
        from posttrain.serve.admin_views import router as admin_views_router  # leaderboard, dashboard, A/B

        app.include_router(admin_views_router)
    return app


def _exit_cleanly_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; make that a SystemExit so the
    `finally` below still closes the store (flushes the writer, checkpoints the WAL)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))


def prepare_model(store: Store, model: str, say: Callable[[str], None] | None = None,
                  load: bool | None = True) -> threading.Event:
    """Resolve the default model and convert the embedded one if this is its first use (~30 s,
    once), then load its weights: now (`load=True`), in a background thread (`load=False`), or
    not at all (`load=None`: the parent of several worker processes, which each load their
    own). Returns an event set once the weights are loaded; a chat request arriving before
    waits only for the rest of that load. Raises ValueError for an unknown or broken model."""
    from posttrain.models.registry import get_model, load_backend

    try:
        get_model(store, model)
        backend = load_backend(store, model)
    except KeyError as exc:
        raise ValueError(str(exc)) from None
    folder = getattr(backend, "model_dir", None)  # the local backend: convert + load the weights
    if folder is not None:
        from posttrain.models.embedded import is_converted

        if say is not None and getattr(backend, "path", None) is None and not is_converted():
            say("Converting the embedded model SmolLM2-135M-Instruct to safetensors (once, ~30 s)...")
        _ = backend.model_dir  # converts the embedded model on its first use
    ready = threading.Event()
    if load is None:
        ready.set()
        return ready

    def warm() -> None:
        try:
            if folder is not None:
                _ = backend.tokenizer  # loads tokenizer and weights (LocalBackend._ensure_loaded)
        except Exception:  # the first request reports it, as a one-line 4xx/5xx
            log.exception("loading the default model %s failed", model)
        finally:
            ready.set()

    if load:
        warm()
    else:
        threading.Thread(target=warm, name="posttrain-model-load", daemon=True).start()
    return ready


def serve(host: str = "127.0.0.1", port: int = 8000, db: str | None = None,
          model: str | None = None, log_level: str = "warning", *, limits: Limits | None = None,
          system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, docs: bool = False,
          auth_failures_per_minute: int = 30, workers: int = 1) -> None:
    """Run the server until interrupted: migrate the store, register the built-in models, load
    the default model, print the URL, serve with uvicorn; in this process (`workers=1`) or in
    `workers` processes supervised by this one (serve/workers.py). Raises ValueError for an
    unknown model; opening the store raises what SQLAlchemy raises."""
    import uvicorn

    from posttrain.models.registry import ensure_default_models

    store = Store.open(db)  # runs the migrations
    try:
        ensure_default_models(store)
        model = model or DEFAULT_MODEL
        say = lambda line: print(line, flush=True)  # noqa: E731
        if workers > 1:
            _serve_workers(store, host, port, db, model, log_level, limits, system_prompt, docs,
                           auth_failures_per_minute, workers, say)
            return
        # Convert now (before the URL), load the weights while the server starts: liveness and
        # feedback need no model, and a server on a busy machine still comes up at once.
        ready = prepare_model(store, model, say=say, load=False)
        app = create_app(store, default_model=model, limits=limits, system_prompt=system_prompt, docs=docs,
                         auth_failures_per_minute=auth_failures_per_minute)
        app.state.model_ready = ready
        # Bind first, so a busy port is a one-line OSError before anything is printed.
        from posttrain.serve.workers import bind_socket

        sock = bind_socket(host, port)
        config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                                h11_max_incomplete_event_size=errors.MAX_HEADER_BYTES)
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        url = store.engine.url.render_as_string(hide_password=True)
        print(f"posttrain serving http://{shown}:{sock.getsockname()[1]}/ (model {model}, store {url})", flush=True)
        _exit_cleanly_on_sigterm()
        # Move everything loaded so far (FastAPI, SQLAlchemy, pydantic) out of the collector's
        # reach: full collections then scan only new objects. Measured on feedback ingest: GC
        # pauses up to 130 ms -> 60 ms, p99 at saturation 122 ms -> 25 ms (BENCHMARKS.md).
        gc.collect()
        gc.freeze()
        server.run(sockets=[sock])
    finally:
        store.close()


def _serve_workers(store: Store, host: str, port: int, db: str | None, model: str, log_level: str,
                   limits: Limits | None, system_prompt: str | None, docs: bool,
                   auth_failures_per_minute: int, workers: int, say: Callable[[str], None]) -> None:
    """The parent of `workers` server processes: convert the model once, bind, supervise."""
    import dataclasses

    from posttrain.serve.workers import WorkerSettings, bind_socket, run_workers

    prepare_model(store, model, say=say, load=None)  # each worker loads its own weights
    url = store.engine.url.render_as_string(hide_password=True)
    store.close()  # the parent keeps no connection: the workers open their own
    settings = WorkerSettings(db=db, model=model, system_prompt=system_prompt, docs=docs,
                              auth_failures_per_minute=auth_failures_per_minute,
                              limits=dataclasses.asdict(limits or Limits()))
    sock = bind_socket(host, port, reuse_port=True)
    shown = f"[{host}]" if ":" in host else host
    say(f"posttrain serving http://{shown}:{sock.getsockname()[1]}/ (model {model}, store {url}, {workers} worker processes)")
    run_workers(workers, settings, sock, log_level=log_level, h11_max_incomplete_event_size=errors.MAX_HEADER_BYTES)
