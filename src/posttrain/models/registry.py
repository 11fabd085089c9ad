"""The model registry: named models, each a backend kind plus its config, with lineage.

A registered name is what users pass around (`--model smollm2-135m`, the `model` field of a chat
request). `parent`, `data_snapshot` and `metrics` record where a fine-tuned model came from, so a
release can be traced back to the data that trained it.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from posttrain.models.base import _BACKENDS, Backend, backend_kinds, create_backend
from posttrain.models.embedded import EMBEDDED_MODEL
from posttrain.store import Store
from posttrain.store import registry as sql

__all__ = [
    "DEFAULT_MODELS",
    "ModelInfo",
    "UnknownModel",
    "cached_backend",
    "ensure_default_models",
    "get_model",
    "list_models",
    "load_backend",
    "register_model",
]

# name -> (backend kind, config) registered in every store.
DEFAULT_MODELS: dict[str, tuple[str, dict[str, Any]]] = {EMBEDDED_MODEL: ("local", {})}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
# Config keys that would put a secret into the database; the registry stores the variable's name.
_SECRET_KEYS = {"api_key", "key", "token", "password", "secret"}


class UnknownModel(KeyError):
    """No model of that name is registered. (A KeyError whose str() is the plain message.)"""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


@dataclass
class ModelInfo:
    """One registered model. `parent` is the parent model's name (None for base models)."""

    id: str
    name: str
    backend: str
    config: dict[str, Any]
    parent: str | None = None
    data_snapshot: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (created_at as ISO 8601 UTC)."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d


def _info(row: Any, parent: str | None) -> ModelInfo:
    created = row.created_at
    if created is not None and created.tzinfo is None:  # SQLite drops the zone; we always store UTC
        created = created.replace(tzinfo=timezone.utc)
    return ModelInfo(id=row.id, name=row.name, backend=row.backend, config=dict(row.config or {}),
                     parent=parent, data_snapshot=row.data_snapshot, metrics=dict(row.metrics or {}),
                     created_at=created)


def _unknown(name: str, known: list[str]) -> UnknownModel:
    return UnknownModel(f"unknown model {name!r}; registered models: {', '.join(known) or '(none)'}")


def _check_config(backend: str, config: dict[str, Any]) -> None:
    """Reject what would fail later, now: unknown kind, arguments the backend does not take,
    values JSON cannot store, and secrets."""
    kinds = backend_kinds()
    if backend not in kinds:
        raise ValueError(f"unknown backend {backend!r}; known backends: {', '.join(kinds)}")
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict of the backend's arguments, got {type(config).__name__}")
    secrets = sorted(_SECRET_KEYS & set(config))
    if secrets:
        raise ValueError(f"config must not hold secrets ({', '.join(secrets)}); store the environment variable's name in api_key_env")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be JSON-serializable: {exc}") from None
    try:
        inspect.signature(_BACKENDS[backend]).bind(**config)
    except TypeError as exc:
        raise ValueError(f"config does not fit backend {backend!r}: {exc}") from None
    # Constructors are cheap (backends load lazily) and check their own arguments: a missing
    # checkpoint folder or a malformed URL is refused now rather than at the first chat.
    probe = create_backend(backend, **config)
    close = getattr(probe, "close", None)
    if callable(close):
        close()


def register_model(store: Store, name: str, backend: str, config: dict[str, Any] | None = None,
                   parent: str | None = None, data_snapshot: str | None = None,
                   metrics: dict[str, Any] | None = None) -> ModelInfo:
    """Register a model under a new name. `parent` is the name of the model it was trained from.

    Raises ValueError (duplicate name, bad name/backend/config) or UnknownModel (unknown parent);
    nothing is written then.
    """
    config = {} if config is None else config
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid model name {name!r}: use letters, digits and . _ - : / @ + (at most 200, no spaces)")
    _check_config(backend, config)
    if metrics is not None:
        try:
            json.dumps(metrics)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metrics must be JSON-serializable: {exc}") from None

    def write(session: Any) -> ModelInfo:
        parent_id = None
        if parent is not None:
            prow = sql.model_by_name(session, parent)
            if prow is None:
                raise _unknown(parent, sql.model_names(session))
            parent_id = prow.id
        row = sql.insert_model(session, name=name, backend=backend, config=config, parent_id=parent_id,
                               data_snapshot=data_snapshot, metrics=metrics)
        return _info(row, parent)

    try:
        return store.write(write)
    except sql.DuplicateModel:
        raise ValueError(f"a model named {name!r} is already registered; choose another name") from None


def get_model(store: Store, name: str) -> ModelInfo:
    """The registered model called `name`; UnknownModel (a KeyError) lists the known names."""
    with store.session() as s:
        row = sql.model_by_name(s, name)
        if row is None:
            raise _unknown(name, sql.model_names(s))
        parent = sql.model_by_id(s, row.parent_id).name if row.parent_id else None
        return _info(row, parent)


def list_models(store: Store) -> list[ModelInfo]:
    """Every registered model, oldest first."""
    with store.session() as s:
        rows = sql.all_models(s)
        parents = sql.parent_names(s, {r.parent_id for r in rows if r.parent_id})
        return [_info(r, parents.get(r.parent_id) if r.parent_id else None) for r in rows]


def ensure_default_models(store: Store) -> None:
    """Register the built-in models that are missing. Idempotent; concurrent callers (threads or
    processes) end with exactly one row per name."""
    from sqlalchemy.exc import OperationalError

    with store.session() as s:
        have = set(sql.model_names(s))
    missing = {n: v for n, v in DEFAULT_MODELS.items() if n not in have}
    if not missing:
        return

    def write(session: Any) -> None:
        for name, (backend, config) in missing.items():
            sql.insert_model_if_missing(session, name=name, backend=backend, config=config)

    for attempt in range(5):
        try:
            store.write(write)
            return
        except OperationalError:
            # SQLite: another process committed while our snapshot was open ("database is
            # locked"); the retry sees its rows and inserts nothing.
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


_backends: dict[tuple[str, str, str], Backend] = {}
_backends_lock = threading.Lock()
# store -> {name: backend} for names this process has resolved. Registered models are never
# changed or deleted, so a hit needs no registry read (that read was 11 % of the server's CPU per
# proxied chat request). Keyed by the Store object, weakly: one process may open several stores
# that hold different models under the same name. Only hits are cached, so a model registered
# by another process after startup is found by the read on the first miss.
_resolved: weakref.WeakKeyDictionary[Store, dict[str, Backend]] = weakref.WeakKeyDictionary()


def cached_backend(store: Store, name: str) -> Backend | None:
    """The backend for `name` if this process has already resolved it on `store`, else None.
    No database access and no locking, so the event loop may call it directly."""
    known = _resolved.get(store)
    return known.get(name) if known is not None else None


def load_backend(store: Store, name: str) -> Backend:
    """The backend instance for a registered model: created once per process per (name, kind,
    config) and shared by every thread, so the local model's weights are loaded only once.
    Raises UnknownModel for a name that is not registered (never cached)."""
    backend = cached_backend(store, name)
    if backend is not None:
        return backend
    info = get_model(store, name)
    key = (info.name, info.backend, json.dumps(info.config, sort_keys=True))
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            kwargs = dict(info.config)
            if info.backend in backend_kinds() and "name" in inspect.signature(_BACKENDS[info.backend]).parameters:
                kwargs.setdefault("name", info.name)  # so logs and responses show the registered name
            backend = create_backend(info.backend, **kwargs)
            _backends[key] = backend
        _resolved.setdefault(store, {})[name] = backend
        return backend


def update_model_metrics(store: Store, name: str, key: str, value: Any) -> ModelInfo:
    """Record a measurement made after registration as metrics[key] (e.g. a reward model's
    "audit"); replaces an earlier value under the same key. Backend and config never change, so
    cached backends stay valid. Raises UnknownModel for an unregistered name."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metrics[{key!r}] must be JSON-serializable: {exc}") from None

    def write(session: Any) -> ModelInfo:
        row = sql.update_model_metrics(session, name, key, value)
        if row is None:
            raise _unknown(name, sql.model_names(session))
        parent = sql.model_by_id(session, row.parent_id).name if row.parent_id else None
        return _info(row, parent)

    return store.write(write)
