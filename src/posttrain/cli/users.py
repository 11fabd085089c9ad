"""`posttrain users`: create API keys, list users, and users' control over their data (consent,
delete, revoke a key)."""

from __future__ import annotations

from typing import Optional

import typer

from posttrain.cli._common import db_option, emit, fail

users_app = typer.Typer(help="Users and their API keys.", no_args_is_help=True)


def _open_store(db: str | None):  # noqa: ANN202 (Store is imported lazily)
    from posttrain.store import Store

    try:
        return Store.open(db)
    except Exception as exc:  # a bad URL or unreachable server: one line, no traceback
        fail(f"cannot open the store at {db or 'the default location'}: {' '.join(str(exc).split())[:200]}")


def with_store(db: str | None, fn, expected: tuple[type[Exception], ...] = ()):  # noqa: ANN001, ANN202
    """fn(store) on the store at `db`, closed afterwards; an `expected` exception is a one-line
    error (exit 2). Shared by the command groups of this stage (users, export)."""
    store = _open_store(db)
    try:
        return fn(store)
    except expected as exc:
        fail(exc.args[0] if exc.args else str(exc))
    finally:
        store.close()


def _on_user(db: str | None, fn):  # noqa: ANN001, ANN202
    """fn(store) for a command about one named user; an unknown name is a one-line error."""
    from posttrain.store.users import UserNotFound

    return with_store(db, fn, (UserNotFound,))


@users_app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="A unique user name."),
    admin: bool = typer.Option(False, "--admin", help="May call the /v1/admin endpoints."),
    no_consent: bool = typer.Option(False, "--no-consent", help="Keep this user's data out of training exports."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (includes the key)."),
) -> None:
    """Create a user and print their API key (shown once; only its hash is stored)."""
    from posttrain.store.users import UserExists, add_user

    store = _open_store(db)
    try:
        user, key = add_user(store, name, admin=admin, consent=not no_consent)
    except (UserExists, ValueError) as exc:
        fail(str(exc))
    finally:
        store.close()
    # The key alone on stdout, so `KEY=$(posttrain users add alice)` works.
    emit({**user.to_dict(), "api_key": key}, as_json, key)


@users_app.command("list")
def list_cmd(
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List users (keys are never shown: only their first characters)."""
    from posttrain.store.users import list_users

    store = _open_store(db)
    try:
        with store.session() as s:
            users = list_users(s)
    finally:
        store.close()
    lines = [f"{'NAME':<24} {'ADMIN':<6} {'CONSENT':<8} {'KEY':<14} CREATED"]
    for u in users:
        lines.append(f"{u.name:<24} {'yes' if u.is_admin else 'no':<6} {'yes' if u.consent else 'no':<8} "
                     f"{u.key_prefix + '…':<14} {u.to_dict()['created_at']}")
    emit([u.to_dict() for u in users], as_json, "\n".join(lines))


@users_app.command("consent")
def consent_cmd(
    name: str = typer.Argument(..., help="The user."),
    on: Optional[bool] = typer.Option(None, "--on/--off", help="--on: their data may train models; --off: left out of every later export."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Turn a user's consent to training on their data on or off."""
    from posttrain.store.users import set_consent_by_name

    if on is None:
        fail("say --on or --off")
    user = _on_user(db, lambda store: set_consent_by_name(store, name, on))
    emit(user.to_dict(), as_json, f"{user.name}: consent {'on' if user.consent else 'off'}")


@users_app.command("revoke-key")
def revoke_key_cmd(
    name: str = typer.Argument(..., help="The user."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (includes the new key)."),
) -> None:
    """Replace a user's API key: the old one is refused at once by every running server; prints the new one."""
    from posttrain.store.users import revoke_key

    user, key = _on_user(db, lambda store: revoke_key(store, name))
    emit({**user.to_dict(), "api_key": key}, as_json, key)


@users_app.command("delete")
def delete_cmd(
    name: str = typer.Argument(..., help="The user."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Delete a user with their conversations, completions, feedback, memory and instructions;
    lists the models already trained on their data."""
    from posttrain.store.users import delete_user

    result = _on_user(db, lambda store: delete_user(store, name))
    deleted = ", ".join(f"{t} {n}" for t, n in result["deleted"].items())
    lines = [f"deleted user {name} ({deleted})"]
    if result["trained_models"]:
        lines.append(f"models already trained on their data ({len(result['snapshots'])} snapshot(s) held their rows):")
        lines += [f"  {m['name']}  (via {m['via']}, snapshot {m['data_snapshot']})" for m in result["trained_models"]]
    elif result["snapshots"]:
        lines.append(f"{len(result['snapshots'])} snapshot(s) held their rows; no registered model names one of them")
    else:
        lines.append("no snapshot held their rows: no model was trained on their data")
    emit(result, as_json, "\n".join(lines))


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
