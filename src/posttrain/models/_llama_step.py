"""A plain-function forward pass for Llama-architecture checkpoints, with a preallocated KV cache.

Why not `model(...)` each step: at 135 M parameters one step's matrix products take tens of
milliseconds, and the module calls, cache objects and mask building around them cost a large
share on top. This runs the same arithmetic as transformers' LlamaForCausalLM (same RMSNorm,
rotary table, sdpa attention) over the model's own weight tensors, writing keys and values into
one tensor allocated for the whole answer.

Every step uses oneDNN's prepacked weight layout where torch has it. Batched: MKL's sgemm repacks
the weight matrix on every call when the batch is small but above 1, which made a batch-8 step
cost 2-2.5x a batch-1 step; packed once, it costs about the same. At batch 1 too: MKL's
matrix-vector product did not use a second thread on an AMD EPYC (19.5 tok/s on one thread or
two), oneDNN's does (29-31 tok/s on two, 22 on one; BENCHMARKS.md, "Local generation"). The
packed copy is made on the first call: one more copy of the weights in memory (538 MB for the
embedded model), kept beside the model's own, which transformers' generate() still reads.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torch.nn.functional as F

_SUPPORTED_TYPES = {"llama"}


def supports(model: Any) -> bool:
    """True when `model` is a plain Llama whose forward this module reproduces exactly."""
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    return (
        getattr(cfg, "model_type", None) in _SUPPORTED_TYPES
        and type(model).__name__ == "LlamaForCausalLM"
        and getattr(cfg, "hidden_act", None) == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "pretraining_tp", 1) == 1
        and rope.get("rope_type", "default") == "default"
        and getattr(model.model.rotary_emb, "attention_scaling", 1.0) == 1.0
        and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    )


def _packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


class LlamaStep:
    """Prefill and one-token decode steps over a model's weights; the cache lives per call."""

    def __init__(self, model: Any) -> None:
        cfg = model.config
        m = model.model
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        self.eps = cfg.rms_norm_eps
        self.embed = m.embed_tokens.weight
        self.norm = m.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = [
            (L.input_layernorm.weight, L.self_attn.q_proj.weight, L.self_attn.k_proj.weight,
             L.self_attn.v_proj.weight, L.self_attn.o_proj.weight, L.post_attention_layernorm.weight,
             L.mlp.gate_proj.weight, L.mlp.up_proj.weight, L.mlp.down_proj.weight)
            for L in m.layers
        ]
        self.inv_freq = m.rotary_emb.inv_freq
        self._cos = self._sin = torch.empty(0, self.head_dim)
        self._packed: dict[int, torch.Tensor] | None = None
        self._pack_lock = threading.Lock()
        # Filled per call by start(): the cache, the keys' padding mask, the next free slot.
        self.k = self.v = self.key_ok = None
        self.filled = 0
        self.packed = False

    # -- weights ---------------------------------------------------------------------------

    def _pack(self) -> dict[int, torch.Tensor]:
        with self._pack_lock:
            if self._packed is None:
                weights = [w for layer in self.layers for w in layer[1:5] + layer[6:]] + [self.lm_head]
                self._packed = {id(w): torch.ops.mkldnn._reorder_linear_weight(w, 8) for w in weights}
        return self._packed

    def _linear(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self._packed[id(w)], None, "none", [], "")
        return F.linear(x, w)

    def _rms(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # transformers' LlamaRMSNorm, op for op (fp32 throughout here).
        return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps))

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        need = int(positions.max()) + 1
        if need > self._cos.shape[0]:
            # The same products transformers forms per step (position * inv_freq), tabulated once.
            n = max(need, 2 * self._cos.shape[0], 256)
            freqs = torch.arange(n, dtype=torch.float)[:, None] * self.inv_freq.float()
            emb = torch.cat((freqs, freqs), dim=-1)
            self._cos, self._sin = emb.cos(), emb.sin()
        return self._cos[positions].unsqueeze(1), self._sin[positions].unsqueeze(1)

    # -- steps -----------------------------------------------------------------------------

    @torch.inference_mode()
    def start(self, batch: int, length: int, key_ok: torch.Tensor | None) -> None:
        """Allocate the cache for `length` positions; key_ok [batch, length] marks real tokens
        (None: no padding anywhere)."""
        shape = (len(self.layers), batch, self.kv_heads, length, self.head_dim)
        self.k, self.v = torch.empty(shape), torch.empty(shape)
        self.key_ok, self.filled = key_ok, 0
        self.packed = _packing_available()
        if self.packed:
            self._pack()

    def keep(self, rows: torch.Tensor) -> None:
        """Go on with these rows of the batch only (indices into the current batch): their
        cache and padding mask are kept, the others' freed."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]
        if self.key_ok is not None:
            self.key_ok = self.key_ok[rows]

    def finish(self) -> None:
        self.k = self.v = self.key_ok = None

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Run `ids` [batch, n] at `positions` [batch, n] after what is cached; return the last
        position's logits [batch, vocab] in fp32."""
        n = ids.shape[1]
        if n > 1 and self.filled:
            raise ValueError("prefill runs once, into an empty cache")
        logits = self._run(ids, positions, slice(None), self.filled, masked=self.key_ok is not None)
        self.filled += n
        return logits

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, positions: torch.Tensor, groups: list[tuple[int, int, int]]) -> torch.Tensor:
        """The prompts' prefill, one group of rows at a time: `ids`, `positions` [batch, width]
        left-padded as for forward(); each group (first row, end row, its widest prompt n) runs
        only its last n columns, into cache slots [width - n, width). A batch's prompts differ in
        length, and one prefill of the whole batch computes every padding position too (an eval
        suite's 64 prompts in sorted batches of 8 were 35 % padding, 2.6x for a multi-turn one).
        The same arithmetic per real token; returns the last position's logits [batch, vocab]."""
        if self.filled:
            raise ValueError("prefill runs once, into an empty cache")
        width = ids.shape[1]
        out = []
        for r0, r1, n in groups:
            t0 = width - n
            rows = slice(r0, r1)
            padded = self.key_ok is not None and not bool(self.key_ok[rows, t0:width].all())
            # The slots left of the group are never written: masked out, but torch.empty may hold
            # NaN there, and attention multiplies every value row by its weight (0 * NaN = NaN).
            self.k[:, rows, :, :t0] = 0
            self.v[:, rows, :, :t0] = 0
            out.append(self._run(ids[rows, t0:], positions[rows, t0:], rows, t0, masked=padded))
        self.filled = width
        return torch.cat(out)

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, rows: slice, t0: int, *, masked: bool) -> torch.Tensor:
        """`ids` [b, n] of batch rows `rows` into cache slots [t0, t0 + n). A prefill (n > 1)
        attends to the keys of its own slots, a decode step to every cached key; under the
        padding mask when `masked`, else plainly causal."""
        b, n = ids.shape
        t1 = t0 + n
        k0 = 0 if n == 1 else t0
        mask = self._mask(n, rows, k0, t1) if masked else None
        cos, sin = self._rotary(positions)
        half = self.head_dim // 2
        h = F.embedding(ids, self.embed)
        for i, (w_in, wq, wk, wv, wo, w_post, wg, wu, wd) in enumerate(self.layers):
            x = self._rms(h, w_in)
            q = self._linear(x, wq).view(b, n, self.heads, self.head_dim).transpose(1, 2)
            k = self._linear(x, wk).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self._linear(x, wv).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin
            self.k[i, rows, :, t0:t1] = k
            self.v[i, rows, :, t0:t1] = v
            keys, values = self.k[i, rows, :, k0:t1], self.v[i, rows, :, k0:t1]
            if n == 1:
                # One query per row: fold the query heads that share a key head into a "length"
                # of heads-per-group, so attention runs on the key heads without repeating them.
                q = q.reshape(b, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
                a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
            else:
                a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale,
                                                   is_causal=mask is None, enable_gqa=True)
                a = a.transpose(1, 2)
            h = h + self._linear(a.reshape(b, n, self.heads * self.head_dim), wo)
            x = self._rms(h, w_post)
            h = h + self._linear(F.silu(self._linear(x, wg)) * self._linear(x, wu), wd)
        last = self._rms(h[:, -1:], self.norm)
        return self._linear(last, self.lm_head)[:, 0].float()

    def _mask(self, n: int, rows: slice, k0: int, t1: int) -> torch.Tensor | None:
        """The attention mask of `rows` for n queries ending at slot t1 over keys [k0, t1)."""
        if self.key_ok is None:
            return None  # no padding: decode sees every key
        keys = self.key_ok[rows, None, None, k0:t1]
        if n == 1:
            return keys
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        # A padding query would see no key at all (sdpa then returns NaN, which would leak into
        # real rows through 0 * NaN); let it see itself. Its output is never attended to.
        return (keys & causal) | torch.eye(n, dtype=torch.bool)
