"""The model registry on SQLite and PostgreSQL, and the `posttrain models` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.models.local import LocalBackend
from posttrain.models.openai_http import OpenAIBackend
from posttrain.models.registry import (
    ModelInfo,
    UnknownModel,
    ensure_default_models,
    get_model,
    list_models,
    load_backend,
    register_model,
)
from posttrain.store import Store

VLLM = {"base_url": "http://127.0.0.1:8000/v1", "model": "Qwen2.5-7B", "api_key_env": "VLLM_KEY"}


def test_default_model_is_registered_once(store):
    ensure_default_models(store)
    ensure_default_models(store)
    models = list_models(store)
    assert [(m.name, m.backend, m.config) for m in models] == [("smollm2-135m", "local", {})]
    assert models[0].created_at is not None and models[0].created_at.tzinfo is not None


def test_default_models_are_race_safe(store, db_url):
    """Threads sharing a store, and a second Store (its own engine and writer, like another
    process), all ensure the defaults at once: one row."""
    other = Store.open(db_url)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def run(s: Store) -> None:
        barrier.wait()
        try:
            ensure_default_models(s)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(store if k % 2 else other,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    assert [m.name for m in list_models(store)] == ["smollm2-135m"]


def test_register_get_and_list_with_lineage(store, tiny_model_dir):
    ensure_default_models(store)
    base = register_model(store, "vllm-qwen", "openai", VLLM)
    child = register_model(store, "smollm2-sft-1", "local", {"path": str(tiny_model_dir)}, parent="smollm2-135m",
                           data_snapshot="sha256:abc123", metrics={"ifeval": 0.41})
    assert isinstance(child, ModelInfo)
    got = get_model(store, "smollm2-sft-1")
    assert got == child
    assert (got.parent, got.data_snapshot, got.metrics) == ("smollm2-135m", "sha256:abc123", {"ifeval": 0.41})
    assert get_model(store, "vllm-qwen").config == VLLM
    assert [m.name for m in list_models(store)] == ["smollm2-135m", "vllm-qwen", "smollm2-sft-1"]
    assert [m.parent for m in list_models(store)] == [None, None, "smollm2-135m"]
    assert base.to_dict()["created_at"].endswith("+00:00")


def test_unknown_name_lists_the_known_ones(store):
    ensure_default_models(store)
    with pytest.raises(KeyError) as exc:
        get_model(store, "gpt-9")
    assert str(exc.value) == "unknown model 'gpt-9'; registered models: smollm2-135m"
    with pytest.raises(UnknownModel, match="unknown model 'nope'"):
        register_model(store, "child", "openai", VLLM, parent="nope")
    assert [m.name for m in list_models(store)] == ["smollm2-135m"]


def test_duplicate_name_is_refused_and_changes_nothing(store):
    register_model(store, "m1", "openai", VLLM)
    with pytest.raises(ValueError) as exc:
        register_model(store, "m1", "openai", {**VLLM, "model": "other"})
    assert str(exc.value) == "a model named 'm1' is already registered; choose another name"
    assert get_model(store, "m1").config == VLLM


def test_concurrent_duplicate_registrations_one_wins(store):
    outcomes: list[str] = []
    barrier = threading.Barrier(5)

    def run(k: int) -> None:
        barrier.wait()
        try:
            register_model(store, "same", "openai", {**VLLM, "model": f"m{k}"})
            outcomes.append("ok")
        except ValueError:
            outcomes.append("dup")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["dup"] * 4 + ["ok"]
    assert len(list_models(store)) == 1


@pytest.mark.parametrize("name, backend, config, message", [
    ("has space", "openai", VLLM, "invalid model name"),
    ("", "openai", VLLM, "invalid model name"),
    ("m", "tensorflow", {}, r"unknown backend 'tensorflow'; known backends: (\w+, )*local, (\w+, )*openai"),
    ("m", "openai", {**VLLM, "api_key": "sk-live-secret"}, "must not hold secrets"),
    ("m", "openai", {**VLLM, "temprature": 1}, "does not fit backend 'openai'"),
    ("m", "local", {"path": Path("/x")}, "JSON-serializable"),
    ("m", "local", {"path": "/nonexistent/ckpt"}, "no Hugging Face model folder at /nonexistent/ckpt"),
    ("m", "openai", {**VLLM, "base_url": "gpu:8000"}, "base_url must start with http"),
    ("m", "local", {"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_registrations_are_refused(store, name, backend, config, message):
    with pytest.raises(ValueError, match=message) as exc:
        register_model(store, name, backend, config)
    assert "\n" not in str(exc.value)
    assert list_models(store) == []


def test_load_backend_is_created_once_and_shared(store, tiny_model_dir):
    register_model(store, "tiny", "local", {"path": str(tiny_model_dir), "batch_size": 2})
    register_model(store, "remote", "openai", VLLM)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(load_backend(store, "tiny"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b) for b in got}) == 1
    tiny = got[0]
    assert isinstance(tiny, LocalBackend) and tiny.name == "tiny" and tiny.batch_size == 2
    remote = load_backend(store, "remote")
    assert isinstance(remote, OpenAIBackend) and remote.name == "remote" and remote.version() == "http://127.0.0.1:8000/v1|Qwen2.5-7B"
    with pytest.raises(KeyError, match="registered models: remote, tiny"):
        load_backend(store, "missing")


def test_load_backend_follows_the_config(db_url, tiny_model_dir, tmp_path):
    """Two stores with the same name but different configs get different instances."""
    a = Store.open(db_url)
    register_model(a, "shared-name", "local", {"path": str(tiny_model_dir)})
    b_url = f"sqlite:///{tmp_path / 'other.db'}"
    b = Store.open(b_url)
    register_model(b, "shared-name", "local", {"path": str(tiny_model_dir), "batch_size": 3})
    try:
        assert load_backend(a, "shared-name") is load_backend(a, "shared-name")
        assert load_backend(a, "shared-name") is not load_backend(b, "shared-name")
        assert load_backend(b, "shared-name").batch_size == 3
    finally:
        a.close()
        b.close()


# -- the CLI -----------------------------------------------------------------------------------

runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, list(args))


def test_cli_add_and_list(db_url, tiny_model_dir):
    r = _cli("models", "add", "vllm", "--backend", "openai", "--base-url", "http://gpu:8000/v1",
             "--model", "Qwen", "--api-key-env", "VLLM_KEY", "--db", db_url)
    assert r.exit_code == 0, r.output
    r = _cli("models", "add", "tiny", "--backend", "local", "--path", str(tiny_model_dir), "--db", db_url)
    assert r.exit_code == 0, r.output
    r = _cli("models", "list", "--db", db_url, "--json")
    assert r.exit_code == 0, r.output
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert set(rows) == {"smollm2-135m", "vllm", "tiny"}
    assert rows["vllm"]["config"] == {"base_url": "http://gpu:8000/v1", "model": "Qwen", "api_key_env": "VLLM_KEY"}
    assert rows["tiny"]["config"] == {"path": str(tiny_model_dir.resolve())}
    human = _cli("models", "list", "--db", db_url).stdout
    assert "vllm" in human and "api_key_env=VLLM_KEY" in human


@pytest.mark.parametrize("args, message", [
    (["x", "--backend", "local"], "needs --path"),
    (["x", "--backend", "local", "--path", "/nonexistent"], "not a Hugging Face model folder"),
    (["x", "--backend", "openai", "--model", "m"], "needs --base-url"),
    (["x", "--backend", "openai", "--base-url", "gpu:8000", "--model", "m"], "must start with http"),
    (["x", "--backend", "openai", "--base-url", "http://h", "--model", "m", "--api-key-env", "sk-abc.def"], "NAME of an environment variable"),
    (["x", "--backend", "onnx"], "unknown backend 'onnx'"),
    (["smollm2-135m", "--backend", "openai", "--base-url", "http://h", "--model", "m"], "already registered"),
])
def test_cli_add_errors_are_one_line_and_write_nothing(sqlite_store, args, message):
    url = str(sqlite_store.engine.url)
    ensure_default_models(sqlite_store)
    r = _cli("models", "add", *args, "--db", url)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert [m.name for m in list_models(sqlite_store)] == ["smollm2-135m"]


def test_cli_pull_reports_the_embedded_model_folder():
    """Run as a user would: the installed `posttrain` entry point, in a fresh process."""
    exe = Path(sys.executable).with_name("posttrain")
    out = subprocess.run([str(exe), "models", "pull", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (Path(data["path"]) / "model.safetensors").exists()
    assert data["seconds"] >= 0
