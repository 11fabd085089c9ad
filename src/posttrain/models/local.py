"""The `local` backend: a transformers causal LM on this machine (the embedded model by default).

Batches are left-padded (a decoder continues from the last position, so padding must come
first) and generated in chunks of `batch_size`. Generation is serialized with a lock: torch's
threads already fill the cores, and the server calls in from many worker threads.

Llama-architecture checkpoints (the embedded model and everything posttrain.train makes from
it) decode through our own token loop (`_decode.py`, `_llama_step.py`): 1.35-2.3x the tokens/s
of transformers' `generate()` at batch 8 and about the same at batch 1, where the one-thread
matrix-vector products bound both (BENCHMARKS.md); the first streamed chunk comes 1.6-3x
sooner. `generate()` stays the path for every other model (`decoder="generate"` forces it).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from posttrain.models.base import DecodingParams, Generation, Messages, StreamChunk, register_backend
from posttrain.models.embedded import EMBEDDED_MODEL, embedded_model_dir

# Part of version(): bumped when the token loop can choose differently for the same weights
# (a cached eval answer from before must not be reused). 2: our own loop (issue 13), whose
# batched matrix products round differently from generate()'s in the last bits.
_DECODE_VERSION = b"decode-2"
_DECODERS = ("auto", "generate")

__all__ = ["LocalBackend", "embedded_model_dir"]

_ROLES = {"system", "user", "assistant"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_threads_lock = threading.Lock()
_threads_set = False


def _configure_threads() -> None:
    """Give torch all cores but one, once per process (POSTTRAIN_TORCH_THREADS or
    OMP_NUM_THREADS override it).

    Why not all: torch's threads meet at a barrier after every layer, so when any other process
    (or our own server, writer and tokenizer threads) holds one core, a step waits for it. Measured
    on a busy 2-core machine: 2 threads gave 2.2 tok/s at batch 1, 1 thread 11.7 tok/s.
    """
    global _threads_set
    with _threads_lock:
        if _threads_set:
            return
        _threads_set = True
        import torch

        wanted = os.environ.get("POSTTRAIN_TORCH_THREADS")
        if wanted:
            torch.set_num_threads(max(1, int(wanted)))
        elif not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1))


def _check_request(conversations: list[Messages], params: DecodingParams) -> None:
    if not isinstance(params.max_new_tokens, int) or params.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {params.max_new_tokens!r}")
    if params.temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {params.top_p}")
    if any(not isinstance(s, str) or not s for s in params.stop):
        raise ValueError("stop strings must be non-empty strings")
    for conv in conversations:
        if not isinstance(conv, list) or not conv:
            raise ValueError("each conversation must be a non-empty list of messages")
        for m in conv:
            if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"each message needs a role in {sorted(_ROLES)} and a string content, got {m!r}")


class _StopCriteria:
    """Stops a row once its generated text contains a stop string; stops all rows when cancelled.

    Only the last few tokens are decoded each step: a stop string of n characters spans at most
    n tokens, plus a margin for tokens that decode to nothing (special tokens, partial UTF-8).
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], prompt_len: int, cancel: threading.Event | None) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_len = prompt_len
        self.cancel = cancel
        self.window = max((len(s) for s in stops), default=0) + 8

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.cancel is not None and self.cancel.is_set():
            return done | True
        if not self.stops:
            return done
        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        for i, row in enumerate(input_ids[:, start:].tolist()):
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            done[i] = any(s in text for s in self.stops)
        return done


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


@register_backend("local")
class LocalBackend:
    """A transformers causal LM from `path` (any HF-format folder), or the embedded SmolLM2-135M.

    Loads lazily on first use; safe to call from many threads.
    """

    def __init__(self, path: str | None = None, name: str = EMBEDDED_MODEL, device: str = "cpu", batch_size: int = 32,
                 decoder: str = "auto") -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if decoder not in _DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(_DECODERS)}, got {decoder!r}")
        self.path = Path(path).expanduser().resolve() if path else None
        if self.path is not None and not (self.path / "config.json").is_file():
            raise ValueError(f"no Hugging Face model folder at {self.path} (config.json is missing)")
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.decoder = decoder  # "auto": our loop where it applies; "generate": transformers' generate()
        self._model: Any = None
        self._step: Any = None  # the fast loop's forward pass, when the model supports it
        self._tok: Any = None
        self._eos: set[int] = set()
        self._version: str | None = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------

    @property
    def model_dir(self) -> Path:
        """The checkpoint folder (converting the embedded model first if needed)."""
        return self.path if self.path is not None else embedded_model_dir()

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            # Our own progress display is the one users see; a per-load weight bar is noise.
            hf_logging.disable_progress_bar()
            _configure_threads()
            folder = self.model_dir
            tok = AutoTokenizer.from_pretrained(folder)
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            # fp32: bf16 is not faster on these CPUs (no native bf16 matmul), only less exact.
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
            eos = model.generation_config.eos_token_id
            eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
            if tok.eos_token_id is not None:
                eos_ids.add(tok.eos_token_id)
            self._tok, self._eos = tok, eos_ids
            if self.device == "cpu":
                from posttrain.models._decode import fast_step

                self._step = fast_step(model)
            self._model = model  # last: other threads test this without the lock

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer (loads the model on first use)."""
        self._ensure_loaded()
        return self._tok

    def version(self) -> str:
        """sha256 (first 16 hex) over the weight files and config: same weights, same version."""
        if self._version is None:
            folder = self.model_dir
            h = hashlib.sha256(_DECODE_VERSION + b":" + self.decoder.encode())
            files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json")
            for p in files:
                h.update(p.name.encode() + b"\0")
                with open(p, "rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
            self._version = h.hexdigest()[:16]
        return self._version

    # -- generation ----------------------------------------------------------------------------

    def _prompt_ids(self, conversation: Messages) -> list[int]:
        if not self._tok.chat_template:
            raise ValueError(f"the tokenizer in {self.model_dir} has no chat template; save one with the checkpoint")
        text = self._tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        # The template already wrote every special token the model expects (no extra BOS).
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def _check_length(self, prompts: list[list[int]], params: DecodingParams) -> None:
        limit = getattr(self._model.config, "max_position_embeddings", None)
        longest = max(len(p) for p in prompts)
        if limit is not None and longest + params.max_new_tokens > limit:
            raise ValueError(
                f"prompt of {longest} tokens + max_new_tokens {params.max_new_tokens} exceeds "
                f"the model's context of {limit} tokens; shorten the conversation"
            )

    def _generate_kwargs(self, params: DecodingParams) -> dict[str, Any]:
        sample = params.temperature > 0
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": self._tok.pad_token_id,
            "eos_token_id": sorted(self._eos),
        }
        if sample:
            # top_k=0 turns off transformers' default top-50 cut, which OpenAI-style APIs lack.
            kw.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        return kw

    @contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed sampling without disturbing the process-wide RNG other code relies on."""
        import torch

        if seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    @property
    def _fast(self) -> bool:
        return self._step is not None and self.decoder == "auto"

    def _run(self, prompts: list[list[int]], params: DecodingParams,
             seeds: list[int] | None = None, temperatures: list[float] | None = None) -> list[list[int]]:
        """Each prompt's new token ids, generated as one left-padded batch (`seeds`: one per
        prompt, each row sampled from its own seeded generator; `temperatures`: one per prompt,
        with seeds; see generate)."""
        if not self._fast:
            if seeds is None:
                return self._run_generate(prompts, params)
            out = []
            temps = temperatures or [params.temperature] * len(prompts)
            for prompt, seed, t in zip(prompts, seeds, temps):  # generate() has one RNG: one row at a time
                with self._seeded(seed):
                    out.extend(self._run_generate([prompt], replace(params, temperature=t)))
            return out
        import torch

        from posttrain.models._decode import decode

        generators = None
        if seeds is not None and (params.temperature > 0 or temperatures is not None):
            generators = [torch.Generator().manual_seed(s) for s in seeds]

        rows: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        window = max((len(s) for s in params.stop), default=0) + 8  # as in _StopCriteria
        # closing(): the cache is freed here, while the caller still holds the generation lock.
        with closing(decode(self._step, prompts, self._tok.pad_token_id, params, generators, temperatures,
                            finished=done)) as steps:
            for tokens in steps:
                for i, t in enumerate(tokens):
                    if not done[i]:
                        rows[i].append(t)
                        done[i] = t in self._eos or self._stopped(rows[i], params.stop, window)
                if all(done):
                    break
        return rows

    def _stopped(self, row: list[int], stops: tuple[str, ...], window: int) -> bool:
        """Whether the row's last `window` tokens hold a stop string (see _StopCriteria)."""
        return bool(stops) and any(s in self._tok.decode(row[-window:], skip_special_tokens=True) for s in stops)

    def _run_generate(self, prompts: list[list[int]], params: DecodingParams, streamer: Any = None,
                      cancel: threading.Event | None = None) -> list[list[int]]:
        """Left-pad the prompts into one batch, run transformers' generate(), return each row's new token ids."""
        import torch

        width = max(len(p) for p in prompts)
        pad = self._tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        criteria = _StopCriteria(self._tok, params.stop, width, cancel)
        from transformers import StoppingCriteriaList

        with torch.inference_mode():
            out = self._model.generate(
                input_ids=input_ids, attention_mask=mask, streamer=streamer,
                stopping_criteria=StoppingCriteriaList([criteria]), **self._generate_kwargs(params),
            )
        return [row[width:] for row in out.tolist()]

    def _finish(self, new_ids: list[int], prompt_len: int, params: DecodingParams, latency_ms: float) -> Generation:
        """Turn one row's new tokens into a Generation: cut at EOS or the first stop string."""
        end = next((i for i, t in enumerate(new_ids) if t in self._eos), None)
        body = new_ids if end is None else new_ids[:end]
        text = self._tok.decode(body, skip_special_tokens=True)
        cut = _first_stop(text, params.stop)
        if cut is not None:
            # Count tokens up to the one that completed the stop string (that is where we stopped).
            used = next(k for k in range(1, len(body) + 1)
                        if _first_stop(self._tok.decode(body[:k], skip_special_tokens=True), params.stop) is not None)
            return Generation(text[:cut], prompt_len, used, latency_ms, "stop")
        if end is not None:
            return Generation(text, prompt_len, end + 1, latency_ms, "stop")
        reason = "length" if len(new_ids) >= params.max_new_tokens else "stop"
        return Generation(text, prompt_len, len(new_ids), latency_ms, reason)

    def generate(self, conversations: list[Messages], params: DecodingParams,
                 seeds: list[int] | None = None, temperatures: list[float] | None = None) -> list[Generation]:
        """One Generation per conversation, in order; chunks of batch_size, similar lengths together.

        `seeds` (one per conversation, instead of params.seed): each answer is sampled from its own
        seeded generator, so it is the answer that conversation gets alone with that seed, whatever
        it is batched with (up to the batched products' rounding). Concurrent requests with
        their own seeds can then share a batch (the rehearsal's styled arms do). `temperatures`
        (one per conversation, instead of params.temperature; only with `seeds`): requests that
        differ only in temperature share a batch too, each answer still the one it gets alone."""
        _check_request(conversations, params)
        if seeds is not None:
            if len(seeds) != len(conversations) or any(not isinstance(x, int) or isinstance(x, bool) for x in seeds):
                raise ValueError("seeds must be one integer per conversation")
            params = replace(params, seed=None)
        if temperatures is not None:
            if seeds is None:
                raise ValueError("temperatures need seeds (one per conversation)")
            if len(temperatures) != len(conversations) or any(
                    isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0 for t in temperatures):
                raise ValueError("temperatures must be one number >= 0 per conversation")
            temperatures = [float(t) for t in temperatures]
        if not conversations:
            return []
        self._ensure_loaded()
        with self._gen_lock:  # the tokenizer too: HF fast tokenizers are not safe to share across threads
            prompts = [self._prompt_ids(c) for c in conversations]
        self._check_length(prompts, params)
        # Sorting by length keeps padding (wasted compute) small inside each chunk.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        with self._gen_lock, self._seeded(params.seed):
            for at in range(0, len(order), self.batch_size):
                idx = order[at : at + self.batch_size]
                started = time.perf_counter()
                rows = self._run([prompts[i] for i in idx], params, None if seeds is None else [seeds[i] for i in idx],
                                 None if temperatures is None else [temperatures[i] for i in idx])
                ms = (time.perf_counter() - started) * 1000
                for i, row in zip(idx, rows):
                    results[i] = self._finish(row, len(prompts[i]), params, ms)
        return [g for g in results if g is not None]

    def stream(self, conversation: Messages, params: DecodingParams) -> Iterator[StreamChunk]:
        """Stream one answer; the pieces concatenate to exactly what generate() returns.

        Bad input raises ValueError here, before any chunk. Text that might be the start of a
        stop string is held back until it is known not to be. Closing the iterator early
        cancels the generation.
        """
        _check_request([conversation], params)
        self._ensure_loaded()
        with self._gen_lock:
            prompt = self._prompt_ids(conversation)
        self._check_length([prompt], params)
        return self._stream_fast(prompt, params) if self._fast else self._stream(prompt, params)

    def _stream_fast(self, prompt: list[int], params: DecodingParams) -> Iterator[StreamChunk]:
        """Decode in the consumer's thread, one step per token; text goes out as soon as it can no
        longer become part of a stop string (nor of a character still being spelled in UTF-8)."""
        from posttrain.models._decode import decode

        holdback = max((len(s) for s in params.stop), default=1) - 1
        with self._gen_lock, self._seeded(params.seed):
            started = time.perf_counter()
            body: list[int] = []
            sent = 0
            with closing(decode(self._step, [prompt], self._tok.pad_token_id, params)) as steps:
                for (t,) in steps:
                    body.append(t)
                    if t in self._eos:
                        break
                    text = self._tok.decode(body, skip_special_tokens=True)
                    cut = _first_stop(text, params.stop)
                    safe = cut if cut is not None else len(text.rstrip("\ufffd")) - holdback
                    if safe > sent:
                        yield StreamChunk(text[sent:safe])
                        sent = safe
                    if cut is not None:
                        break
            gen = self._finish(body, len(prompt), params, (time.perf_counter() - started) * 1000)
            if len(gen.text) > sent:
                yield StreamChunk(gen.text[sent:])
            yield StreamChunk("", gen.finish_reason, gen.prompt_tokens, gen.completion_tokens)

    def _stream(self, prompt: list[int], params: DecodingParams) -> Iterator[StreamChunk]:
        from transformers import TextIteratorStreamer

        holdback = max((len(s) for s in params.stop), default=1) - 1
        with self._gen_lock:
            streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True)
            cancel = threading.Event()
            outcome: dict[str, Any] = {}
            started = time.perf_counter()

            def work() -> None:
                try:
                    with self._seeded(params.seed):
                        outcome["ids"] = self._run_generate([prompt], params, streamer=streamer, cancel=cancel)[0]
                except BaseException as exc:  # re-raised in the consumer
                    outcome["error"] = exc
                    streamer.end()

            worker = threading.Thread(target=work, name="posttrain-stream", daemon=True)
            worker.start()
            try:
                seen, sent, stopped = "", 0, False
                for piece in streamer:
                    seen += piece
                    if stopped:
                        continue
                    cut = _first_stop(seen, params.stop)
                    safe = cut if cut is not None else len(seen) - holdback
                    stopped = cut is not None
                    if safe > sent:
                        yield StreamChunk(seen[sent:safe])
                        sent = safe
                worker.join()
                if "error" in outcome:
                    raise outcome["error"]
                gen = self._finish(outcome["ids"], len(prompt), params, (time.perf_counter() - started) * 1000)
                if len(gen.text) > sent:
                    yield StreamChunk(gen.text[sent:])
                yield StreamChunk("", gen.finish_reason, gen.prompt_tokens, gen.completion_tokens)
            finally:
                cancel.set()
                worker.join()
