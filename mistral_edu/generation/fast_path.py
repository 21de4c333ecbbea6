"""Fast generation: a static KV cache, fused matmuls, and a decode step replayed as one CUDA graph.

Why it is needed. Decoding one token reads every weight once (14.5 GB for Mistral 7B in bf16), so on
a GPU the floor is weights / memory bandwidth: 4.8 ms a token on an H100. The plain model gets to ~15%
of it, and not because of the matmuls: each layer also launches ~40 small kernels (norm, RoPE, casts,
softmax, SiLU, adds), ~1300 a token. Launching one costs the CPU several microseconds, more than the
GPU needs to run it, so the GPU mostly waits for the next launch. Three changes close the gap:

1. Fewer matmuls. wq, wk, wv read the same input, and so do w1 and w3: `fuse_projections` (fusion.py)
   lays each group out as one matrix, once, and the decoder multiplies by it. Two matmuls instead of five.
2. A CUDA graph. The whole step is recorded once and replayed with a single launch per token, which
   removes the CPU from the loop. A graph replays fixed kernels on fixed addresses with fixed shapes,
   hence the static cache: attention always reads all of its slots and masks the ones not written yet.
3. Fusion (optional, torch.compile). The graph removes the launch cost, not the kernels: each small
   kernel still takes a few microseconds and a round trip through memory. Compiling the code between
   the matmuls fuses each run of elementwise work into one kernel (~14 kernels a layer instead of ~40).
   The pieces are compiled once and reused by every layer (same shapes), so the one-off compile covers
   one layer's code, not 32 (transformers' whole-step compile takes ~46 s on an H100).

On the CPU there is no graph, but the fused matmuls and the absence of per-token bookkeeping still
help, and the output head is stored column-major (see `FastDecoder.__init__`).

int8 models (mistral_edu/int8.py) take this path too: their fused projections are an int8 matrix with
its scales, and `project` multiplies by them with int8_linear, which on the CPU reads the int8 bytes
directly (a matrix-vector kernel, the case of decoding one token) and never builds a float matrix.

What is shared with the model and what is not. The arithmetic is model/'s: rms_norm, rope_rotations,
rotate_pairs (apply_rope in real numbers, which torch.compile can fuse) and swiglu are the functions
the modules call, a prompt's chunks attend to the cache through the model's own fused_attention, and
the tests check the tokens are the plain path's. Two things are the decoder's
own, because the graph forbids what the plain path does. The layer loop: Transformer.forward goes
through modules and hook points and builds an AttentionSpan per call, all Python that a graph cannot
replay and that would hide the weights from torch.compile, so here a loop calls plain functions of
tensors. The cache: KVCache grows its keys by slicing (a new shape every token) and keeps
(slots, n_kv_heads) order for the hooks; this one is read whole at fixed addresses, the unwritten
slots masked, and is stored (n_kv_heads, slots) so that each KV head's keys are one contiguous matrix.

Lifetime. A FastDecoder owns its cache (and on CUDA its captured graph) and holds them as long as it
lives. `generate` builds one per call and drops it on return, so nothing stays allocated; to replay
one captured graph across calls, keep a decoder and pass it: generate(..., decoder=decoder).

Hooks must see every step, so `generate` takes the plain path whenever any hook is attached: ours, torch's
forward or backward hooks (pre-hooks too) on any module, fused projections included, or torch's global
module hooks. It checks on every call, with a kept decoder too, and a decoder refuses to start a sequence
while one is attached. It takes the plain path as well for a sliding window shorter than the generation
(the static cache has no rolling buffer).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..int8 import Int8Linear, int8_linear
from ..hooks import attached_hooks
from ..model import AttentionSpan, fused_attention, rms_norm, rope_rotations, rotate_pairs, swiglu
from .fusion import fused_weight, projection_groups

# Prompts are pushed through the cache this many tokens at a time, so the activations of a 32k prompt
# (a 32k x 14336 SwiGLU intermediate alone is 0.9 GB in bf16) never exist at once; per chunk they take
# ~0.3 GB for Mistral 7B, and peak memory above the weights is the KV cache plus that (4.3 GiB at 32k).
PREFILL_CHUNK = 2048
# generate sizes its decoder's cache up to a multiple of this many slots: torch.compile specialises the
# step on the number of slots, so generations of similar lengths share one compiled step. Attention
# reads every slot: 1024 slots of Mistral 7B are 128 MiB, under 1% of the weights read per token.
SLOT_ROUNDING = 1024
# On the CPU the decoder multiplies by a column-major copy of the output head (see read_weights), but making
# the copy costs as much as 2 (dim 128) to 15 (dim 512) of the head matmuls it speeds up: generate asks
# for it only when at least this many new tokens repay it, so a short call costs no more than the plain path.
HEAD_COPY_MIN_TOKENS = 16
# Fuse the elementwise work with torch.compile on CUDA (see 3. above); it costs a one-off compile.
COMPILE_ON_CUDA = True


# ----------------------------------------------------------------------------- the step, in pure functions
# Plain functions of tensors (no modules), so that torch.compile sees only tensors and compiles each
# once for all 32 layers. They compute what model/*.py computes; tests check the tokens are the same.

def project(x, weight):
    """x W^T for a float matrix, or for an int8 one given as (int8 matrix, per-row scales)."""
    return int8_linear(x, *weight) if isinstance(weight, tuple) else F.linear(x, weight)


def attention_inputs(x, norm_weight, wqkv, cos, sin, eps: float, n_heads: int, n_kv_heads: int):
    """Normalise, project with the fused wq|wk|wv, rotate: q (b, n_heads, s, hd), k and v (b, n_kv_heads, s, hd)."""
    batch, seq, _ = x.shape
    qkv = project(rms_norm(x, norm_weight, eps), wqkv)                        # (batch, seq, (n_heads + 2 n_kv) head_dim)
    qkv = qkv.view(batch, seq, n_heads + 2 * n_kv_heads, -1).transpose(1, 2)   # (batch, all heads, seq, head_dim)
    qk = rotate_pairs(qkv[:, :n_heads + n_kv_heads], cos, sin)                       # q and k heads rotated together
    return qk[:, :n_heads], qk[:, n_heads:], qkv[:, n_heads + n_kv_heads:]


def step_attention(q, keys, values, visible):
    """One new position against the cache: the query heads of each KV group are rows of one small matmul.

    q (batch, n_heads, 1, hd); keys/values (batch, n_kv_heads, slots, hd); visible (slots,) bool, or None
    when keys/values hold only written slots. Returns (batch, 1, n_heads * hd).
    """
    batch, n_heads, _, head_dim = q.shape
    n_kv_heads = keys.shape[1]
    q = q.reshape(batch, n_kv_heads, n_heads // n_kv_heads, head_dim)          # query head h reads KV head h // n_rep
    scores = q @ keys.transpose(-1, -2) / math.sqrt(head_dim)                  # (batch, n_kv_heads, n_rep, slots)
    if visible is not None:
        scores = scores.masked_fill(~visible, float("-inf"))
    pattern = F.softmax(scores.float(), dim=-1).type_as(q)                     # (batch, n_kv_heads, n_rep, slots)
    z = pattern @ values                                                       # (batch, n_kv_heads, n_rep, hd)
    return z.reshape(batch, 1, n_heads * head_dim)                             # (batch, 1, n_heads * hd)


def attention_output_and_feed_forward(x, z, wo, norm_weight, w13, w2, eps: float):
    """The rest of the block: x + wo z, then + w2(silu(w1 h) * w3 h) with the fused w1|w3."""
    x = x + project(z, wo)                                                     # (batch, seq, dim)
    gate, up = project(rms_norm(x, norm_weight, eps), w13).chunk(2, dim=-1)    # (batch, seq, hidden_dim) each
    return x + project(swiglu(gate, up), w2)                                   # (batch, seq, dim)


_COMPILED: dict[str, object] = {}


def compiled_step_functions() -> dict:
    """The three pieces between the cache writes, compiled once per process (shared by all decoders)."""
    if not _COMPILED:
        print("mistral_edu: the fast decode step is compiled at its first use, once per process (up to a minute)",
              flush=True)
        for fn in (attention_inputs, step_attention, attention_output_and_feed_forward):
            _COMPILED[fn.__name__] = torch.compile(fn, fullgraph=True, dynamic=False)
    return _COMPILED


PLAIN_STEP_FUNCTIONS = {fn.__name__: fn for fn in (attention_inputs, step_attention, attention_output_and_feed_forward)}


# ----------------------------------------------------------------------------- the weights it reads

Matrix = torch.Tensor | tuple[torch.Tensor, torch.Tensor]   # a float matrix, or (int8 matrix, scales)


@dataclass
class LayerWeights:
    """One block's weights as the step functions take them (detached tensors sharing the model's storage)."""

    attention_norm: torch.Tensor
    wqkv: Matrix
    wo: Matrix
    ffn_norm: torch.Tensor
    w13: Matrix
    w2: Matrix


def matrix(linear: nn.Module) -> Matrix:
    """A linear's weight as `project` takes it: the tensor, or an Int8Linear's (int8 matrix, scales)."""
    if isinstance(linear, Int8Linear):
        return linear.weight_int8, linear.scale
    return linear.weight.detach()


def layer_weights(block) -> LayerWeights:
    """The block's weights, its projections read as the fused matrices fuse_projections made."""
    qkv, w13 = (fused_weight(linears) for linears in projection_groups(block))
    return LayerWeights(
        attention_norm=block.attention_norm.weight.detach(),
        wqkv=qkv,
        wo=matrix(block.attention.wo),
        ffn_norm=block.ffn_norm.weight.detach(),
        w13=w13,
        w2=matrix(block.feed_forward.w2),
    )


def parameter_signature(model) -> tuple:
    """Where every weight lives and how often the output head was edited in place: a change means re-read.

    The decoder reads the weights' own storage, so in-place edits reach it; only the CPU's
    transposed output head is a copy, and the output weight's version counter says when it is stale.
    Buffers count too: an int8 model's matrices and scales are buffers.
    """
    weights = [*model.parameters(), *model.buffers()]
    return tuple((w.data_ptr(), w.dtype, w.device) for w in weights), model.output.weight._version


# ----------------------------------------------------------------------------- the decoder

class FastDecoder:
    """Prefill and one-token decode for batch 1 through a static cache; on CUDA the step is a CUDA graph.

    decoder.prefill(prompt_ids) -> (1, vocab) logits of the last prompt position (it starts a new
    sequence), then decoder.decode(token_id) -> (1, vocab) logits of the next. The model must be fused
    first (fuse_projections). The decoder holds its cache, max_seq_len positions, and its graph until it
    is dropped; keep one to reuse them across generations (generate(..., decoder=...)).
    """

    def __init__(self, model, max_seq_len: int, use_graph: bool | None = None, use_compile: bool | None = None,
                 copy_head: bool | None = None):
        cfg = model.cfg
        device, dtype = model.device, model.dtype
        if not 0 < max_seq_len <= cfg.max_seq_len:
            raise ValueError(f"max_seq_len must be in 1..{cfg.max_seq_len} (the model's context), got {max_seq_len}")
        self.model, self.cfg, self.device, self.dtype, self.slots = model, cfg, device, dtype, max_seq_len
        self.use_graph = device.type == "cuda" if use_graph is None else use_graph
        if self.use_graph and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model; this one is on {device}. Pass use_graph=False")
        self.compiled = self.use_graph and COMPILE_ON_CUDA if use_compile is None else use_compile
        self.step_functions = compiled_step_functions() if self.compiled else PLAIN_STEP_FUNCTIONS
        # Not for an int8 model: it was quantised to fit, and the copy (262 MB for the 7B) could push it out.
        head_copy_helps = device.type == "cpu" and not any(isinstance(m, Int8Linear) for m in model.modules())
        self.copy_head = head_copy_helps if copy_head is None else copy_head
        self.read_weights()

        shape = (1, cfg.n_kv_heads, max_seq_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]  # (1, n_kv, slots, hd) each
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        rotations = rope_rotations(torch.arange(max_seq_len, device=device), cfg.head_dim, cfg.rope_theta)
        self.cos, self.sin = rotations.real.contiguous(), rotations.imag.contiguous()  # (slots, head_dim/2)
        self.slot_positions = torch.arange(max_seq_len, device=device)                 # (slots,)
        self.token = torch.zeros((1, 1), dtype=torch.long, device=device)              # the step's input ...
        self.position = torch.zeros((1,), dtype=torch.long, device=device)             # ... and where it goes
        self.pos = 0                                                                   # tokens in the cache

    @classmethod
    def sized_for(cls, model, total_len: int, new_tokens: int | None = None, use_graph: bool | None = None,
                  use_compile: bool | None = None):
        """What generate builds: a cache of total_len positions rounded up to SLOT_ROUNDING slots, and the
        CPU's copy of the output head only if new_tokens (None: many) are enough to repay it."""
        slots = min(math.ceil(total_len / SLOT_ROUNDING) * SLOT_ROUNDING, model.cfg.max_seq_len)
        few = new_tokens is not None and new_tokens < HEAD_COPY_MIN_TOKENS
        return cls(model, slots, use_graph, use_compile, copy_head=False if few else None)

    def read_weights(self) -> None:
        """Take the model's current weights; a graph captured on the old ones is dropped."""
        model = self.model
        self.layers = [layer_weights(block) for block in model.layers]
        self.embedding = model.tok_embeddings.weight.detach()
        self.norm = model.norm.weight.detach()
        # The output head (vocab x dim) is the largest matmul of a small model. On the CPU, multiplying a
        # vector by a matrix with short rows is ~8x faster when the matrix is stored column-major (the BLAS
        # walks columns with contiguous loads), so the CPU keeps a transposed copy (self.copy_head, see
        # HEAD_COPY_MIN_TOKENS); a GPU wants row-major.
        head = model.output.weight.detach()
        self.output = head.t().contiguous().t() if self.copy_head else head
        self.signature = parameter_signature(model)
        self.graph, self.logits = None, None

    def follow_model(self) -> None:
        """Re-read the weights if any parameter moved or the output head was edited since they were read."""
        model = self.model
        if (model.device, model.dtype) != (self.device, self.dtype):
            raise ValueError(f"the model is now {model.dtype} on {model.device}, but this decoder's cache is "
                             f"{self.dtype} on {self.device}; build a new FastDecoder for it")
        if parameter_signature(model) != self.signature:
            self.read_weights()

    def check_no_hooks(self) -> None:
        """Refuse to start a sequence while hooks are attached: this decoder calls no module, so they would not run."""
        hooks = attached_hooks(self.model)
        if hooks:
            raise ValueError(f"hooks are attached ({'; '.join(hooks[:3])}{'; ...' if len(hooks) > 3 else ''}), and "
                             "the fast decoder would skip them; remove them, or generate with fast=False so they run")

    @torch.no_grad()
    def prefill(self, tokens) -> torch.Tensor:
        """Fill the cache with a prompt (list or (1, seq) tensor of ids), PREFILL_CHUNK tokens at a time."""
        tokens = torch.as_tensor(tokens, dtype=torch.long, device=self.device).reshape(1, -1)   # (1, seq)
        n = tokens.shape[1]
        if not 0 < n <= self.slots:
            raise ValueError(f"the prompt has {n} tokens; this decoder holds 1..{self.slots}")
        self.follow_model()
        self.check_no_hooks()
        cfg, fns = self.cfg, PLAIN_STEP_FUNCTIONS   # varying shapes: never the compiled functions
        for start in range(0, n, PREFILL_CHUNK):
            end = min(start + PREFILL_CHUNK, n)
            x = F.embedding(tokens[:, start:end], self.embedding)                          # (1, chunk, dim)
            cos, sin = self.cos[start:end], self.sin[start:end]                            # (chunk, head_dim/2)
            span = AttentionSpan(q_start=start, q_len=end - start, k_start=0, k_len=end)   # the chunk after the cache
            for layer, w in enumerate(self.layers):
                q, k, v = fns["attention_inputs"](x, w.attention_norm, w.wqkv, cos, sin, cfg.norm_eps,
                                                  cfg.n_heads, cfg.n_kv_heads)
                self.k[layer][:, :, start:end] = k
                self.v[layer][:, :, start:end] = v
                z = fused_attention(q, self.k[layer][:, :, :end], self.v[layer][:, :, :end], span)  # (1, n_heads, chunk, hd)
                z = z.transpose(1, 2).flatten(2)                                              # (1, chunk, n_heads hd)
                x = fns["attention_output_and_feed_forward"](x, z, w.wo, w.ffn_norm, w.w13, w.w2, cfg.norm_eps)
        self.pos = n
        return self.head(x[:, -1:])                                                         # (1, vocab)

    @torch.no_grad()
    def decode(self, token: int) -> torch.Tensor:
        """Append one token; the (1, vocab) float32 logits of the position after it."""
        if self.pos >= self.slots:
            raise ValueError(f"the cache is full ({self.slots} positions); build a decoder with a larger max_seq_len")
        self.token.fill_(token)
        self.position.fill_(self.pos)
        self.pos += 1
        if not self.use_graph:
            return self.step(n_visible=self.pos)
        if self.graph is None:
            try:
                self.capture()
            except RuntimeError as error:
                warnings.warn(f"capturing the decode step as a CUDA graph failed ({error}); decoding without one")
                self.use_graph, self.graph = False, None
                return self.step(n_visible=self.pos)
        self.graph.replay()
        return self.logits

    def step(self, n_visible: int | None = None) -> torch.Tensor:
        """One token through every layer. n_visible=None: static shapes (all slots, masked), as the graph needs."""
        cfg, fns = self.cfg, self.step_functions
        x = F.embedding(self.token, self.embedding)                                        # (1, 1, dim)
        cos, sin = self.cos[self.position], self.sin[self.position]                        # (1, head_dim/2)
        visible = self.slot_positions <= self.position if n_visible is None else None      # (slots,)
        for layer, w in enumerate(self.layers):
            q, k, v = fns["attention_inputs"](x, w.attention_norm, w.wqkv, cos, sin, cfg.norm_eps,
                                              cfg.n_heads, cfg.n_kv_heads)
            self.k[layer].index_copy_(2, self.position, k)                                 # slot `position`
            self.v[layer].index_copy_(2, self.position, v)
            keys, values = self.k[layer], self.v[layer]                                    # (1, n_kv, slots, hd)
            if n_visible is not None:
                keys, values = keys[:, :, :n_visible], values[:, :, :n_visible]
            z = fns["step_attention"](q, keys, values, visible)                           # (1, 1, n_heads hd)
            x = fns["attention_output_and_feed_forward"](x, z, w.wo, w.ffn_norm, w.w13, w.w2, cfg.norm_eps)
        return self.head(x)                                                                # (1, vocab)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and output head of a (1, 1, dim) residual: (1, vocab) float32 logits."""
        return F.linear(rms_norm(x, self.norm, self.cfg.norm_eps), self.output).float()[:, -1]

    def capture(self) -> None:
        """Record step() once as a CUDA graph, after warm-up runs that compile and pick kernels.

        The warm-up steps write slot self.position of the cache with a real step's keys and values,
        so the state afterwards is what one ordinary step would leave.
        """
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            try:
                self.warm_up()
            except Exception as error:  # noqa: BLE001 (e.g. no Triton here: the graph alone still helps)
                if not self.compiled:
                    raise
                warnings.warn(f"torch.compile of the decode step failed ({type(error).__name__}: {error}); "
                              "decoding with the CUDA graph alone")
                self.compiled, self.step_functions = False, PLAIN_STEP_FUNCTIONS
                self.warm_up()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.step()

    def warm_up(self) -> None:
        for _ in range(2):
            self.step()


def fast_path_applies(model, total_len: int) -> bool:
    """Whether generate may use the fast path: no hook of any kind attached (ours, torch's on any module, or
    torch's global module hooks: the fast path calls no module, so none of them would run), and no sliding
    window that matters."""
    window = model.cfg.sliding_window
    if window is not None and window < total_len:
        return False
    # A streamed model's weights are on disk (meta between passes): nothing resident to fuse or read.
    if any(p.is_meta for p in model.parameters()):
        return False
    return not attached_hooks(model)
