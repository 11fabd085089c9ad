"""`posttrain serve`: the chat + feedback server and its web page."""

from __future__ import annotations

from typing import Optional

import typer

from posttrain.cli._common import db_option, fail


def _hide_flag_types() -> None:
    """typer 0.29 prints a type column for every option, and for an on/off flag that is
    `<bool>`, as if the flag took a value (`--json <bool>`). A flag takes none: show no type.
    (TyperOption.display_type_rich returns display_type() whether or not the option is a flag.)"""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_posttrain", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202
        if getattr(self, "is_flag", False) and getattr(self, "is_bool_flag", False):
            return None
        return original(self, ctx)

    display_type_rich._posttrain = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


def _open_store(db: str | None):  # noqa: ANN202
    from posttrain.store import Store

    try:
        return Store.open(db)
    except Exception as exc:  # malformed URL, unreachable server, unwritable file: one line
        fail(f"cannot open the store at {db or 'the default location'}: {' '.join(str(exc).split())[:200]}")


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    db: Optional[str] = db_option(),
    model: Optional[str] = typer.Option(None, "--model", help="Default model for requests that name none (default: smollm2-135m)."),
    system_prompt: Optional[str] = typer.Option(
        None, "--system-prompt", envvar="POSTTRAIN_SYSTEM_PROMPT",
        help="System message sent when a conversation has none (default: 'You are a helpful assistant.'; '' sends an empty one)."),
    user_concurrency: int = typer.Option(4, "--user-concurrency", min=0, envvar="POSTTRAIN_USER_CONCURRENCY",
                                         help="Chat requests in flight per user (0: no limit)."),
    user_tpm: int = typer.Option(20000, "--user-tokens-per-minute", min=0, envvar="POSTTRAIN_USER_TOKENS_PER_MINUTE",
                                 help="Tokens (n x max_tokens) a user may reserve per minute (0: no limit)."),
    request_tokens: int = typer.Option(8192, "--request-tokens", min=0, envvar="POSTTRAIN_REQUEST_TOKENS",
                                       help="Cap on n x max_tokens of one request (0: no cap)."),
    exempt_admins: bool = typer.Option(False, "--exempt-admins", envvar="POSTTRAIN_EXEMPT_ADMINS",
                                       help="Admins bypass the per-user limits."),
    auth_failures: int = typer.Option(30, "--auth-failures-per-minute", min=0, envvar="POSTTRAIN_AUTH_FAILURES_PER_MINUTE",
                                      help="Failed key checks per client address per minute before 429 (0: no limit)."),
    workers: int = typer.Option(1, "--workers", min=0, envvar="POSTTRAIN_WORKERS",
                                help="Server processes on this port and store (0: one per CPU core). "
                                     "Each loads its own copy of the default model; see docs/scale.md."),
    docs: bool = typer.Option(False, "--docs", help="Serve Swagger UI at /docs (it loads its assets from a CDN)."),
    demo_admin: bool = typer.Option(False, "--demo-admin",
                                    help="Print a fresh key for the admin 'demo-admin' (created once; the old key stops working)."),
) -> None:
    """Serve the web page at /, the OpenAI-compatible API at /v1, feedback at /v1/feedback."""
    from posttrain.serve.app import DEFAULT_SYSTEM_PROMPT, serve
    from posttrain.serve.scheduler import Limits
    from posttrain.serve.workers import default_workers

    store = _open_store(db)  # fail early, in one line, on a bad --db; also runs the migrations
    try:
        if demo_admin:
            from posttrain.serve.demo_admin import DEMO_ADMIN, rotate_demo_admin

            try:
                key = rotate_demo_admin(store)
            except (RuntimeError, ValueError) as exc:
                fail(str(exc))
            shown = f"[{host}]" if ":" in host else host
            typer.echo(f"Admin {DEMO_ADMIN}: sign in at http://{shown}:{port}/ with this key (the previous one "
                       f"no longer works):\n\n    {key}\n")
    finally:
        store.close()
    limits = Limits(user_concurrency=user_concurrency, user_tokens_per_minute=user_tpm,
                    request_tokens=request_tokens, exempt_admins=exempt_admins)
    try:
        serve(host=host, port=port, db=db, model=model, limits=limits, docs=docs,
              system_prompt=DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt,
              auth_failures_per_minute=auth_failures, workers=workers or default_workers())
    except ValueError as exc:  # unknown model
        fail(str(exc))
    except OSError as exc:  # port in use, unreachable database host...
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
