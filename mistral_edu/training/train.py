"""Train the embedded default: ModelConfig.tiny() on public-domain English plus repeated random spans.

    python -m mistral_edu.training.train                # train (resumes from --work if a state is there)
    python -m mistral_edu.training.train --export-only  # write the latest state to mistral_edu/default

Deterministic given --seed: step s draws its batch from np.random.default_rng([seed, s]), so a run
resumed from a checkpoint continues exactly as if it had never stopped.

Two choices are meant to make it feasible on a CPU and to make induction heads form:
- The loss is a softmax over the --loss-types most frequent token types (8,000 by default, 98.5% of
  the training tokens), not all 32000: the output layer dominates the cost. On export, every
  never-trained output row is set to the mean of the trained rows, so such a token gets an average
  token's logit, far below the likely ones.
- Part of each batch is BOS + random tokens repeated ("copy rows"). Their tokens come from the most
  frequent types, a vocabulary that starts small (copying from 200 types is learned fast) and widens
  during training; induction is measured on ordinary English words, many never copied in training.

For copying in running text, 512-token context and no probability on unseen types (issue 28), the script
also offers: fine-tuning (--init), the full softmax (--loss-types 0) with the unlikelihood of the types the
stream never has (--unseen-weight), rows of text in which a span is written again (--natural-fraction,
weighted by --copy-weight), copy rows of other kinds taking turns (--copy-tokens: the corpus's word
frequencies, passages, or jumbles of short runs of the corpus), an unweighted first copy
(--copy-first-weight 0), and stopping mid-schedule (--until). Their defaults leave the recipe above
unchanged: the same seed draws the same rows. mistral_edu/default/MODEL_CARD.md gives the commands
that made the shipped file.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..default import DEFAULT_DIR, corpus
from ..analysis.default_targets import copying_targets, default_targets
from ..analysis.next_token import heldout_windows, never_trained_types, position_bucket_losses, type_mass, window_loss
from ..analysis.heads import (duplicate_token_scores, first_token_scores, induction_scores,
                             previous_token_scores, repeated_random_tokens, top_heads, word_token_ids)
from ..config import ModelConfig
from ..model import Transformer, random_init_
from ..checkpoints import SafetensorsFile, load_model, load_tokenizer, save_consolidated, write_safetensors
from ..generation import generate
from ..progress import progress


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000, help="total optimizer steps (fixes the LR schedule)")
    parser.add_argument("--until", type=int, default=None,
                        help="stop after this step (checkpointing it) while the schedule still spans --steps")
    parser.add_argument("--batch", type=int, default=16, help="rows per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per row after BOS")
    parser.add_argument("--copy-fraction", type=float, default=0.5, help="share of rows that are copy rows")
    parser.add_argument("--copy-tokens", choices=("uniform", "unigram", "text", "phrases"), nargs="+", default=["uniform"],
                        help="copy rows draw tokens uniformly from the copy vocabulary, or as often as the corpus "
                             "uses them (then a copy row has prose's word statistics and only its order differs), "
                             "or repeat a passage of the corpus (prose in every respect but the repetition), "
                             "or repeat a jumble of short runs of the corpus (prose locally, not as a whole); "
                             "several kinds take turns, copy row k being of kind k modulo their number")
    parser.add_argument("--copy-first-weight", type=float, default=1.0,
                        help="loss weight of a copy row's first span (random, so unpredictable): 0 keeps a model "
                             "from learning to predict unigram noise in contexts that look like prose")
    parser.add_argument("--copy-vocab-start", type=int, default=200)
    parser.add_argument("--copy-vocab-end", type=int, default=4000)
    parser.add_argument("--loss-types", type=int, default=8000,
                        help="the loss covers this many of the most frequent token types (the output layer's cost); "
                             "0: the full 32000-way softmax, which pushes never-seen types down with finite logits")
    parser.add_argument("--natural-fraction", type=float, default=0.0,
                        help="share of rows that are text with a span of it written again later in the row")
    parser.add_argument("--natural-span", type=int, nargs=2, default=(8, 48), metavar=("MIN", "MAX"),
                        help="length range of the repeated natural span")
    parser.add_argument("--copy-weight", type=float, default=1.0,
                        help="loss weight of tokens 2.. of each natural span's second copy (the copying signal)")
    parser.add_argument("--init", type=Path, default=None,
                        help="fine-tune: a folder with params.json + consolidated.safetensors to start from "
                             "(used only when --work holds no state)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--qk-lr-scale", type=float, default=1.0,
                        help="learning-rate multiplier for wq and wk: sharp RoPE-positional heads need large q, k")
    parser.add_argument("--unseen-weight", type=float, default=0.0,
                        help="weight of the unlikelihood of the types the training stream never has (full softmax "
                             "only): it teaches the model to put (almost) no probability on them")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 is fastest on a busy shared machine")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a machine with a GPU")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mistral_edu_train_default"),
                        help="folder for the resumable state, token cache and exports")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="where --export-only writes the checkpoint")
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the step and eval lines stay)")
    parser.add_argument("--write-heldout", action="store_true",
                        help="with --export-only: also rewrite heldout.txt (needs the corpus packages)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- data

class Data:
    """The tokenised train/held-out streams, the types the loss covers, and the copy vocabularies."""

    def __init__(self, tokenizer, work: Path, loss_types: int):
        """loss_types 0 means every one of the tokenizer's types (the full softmax)."""
        self.tokenizer = tokenizer
        cache = work / "tokens.npz"
        if cache.is_file():
            with np.load(cache) as saved:
                self.train, self.heldout = saved["train"], saved["heldout"]
        else:
            train_docs, heldout_docs = corpus.split_documents(corpus.documents())
            self.train = corpus.tokenize_documents(tokenizer, train_docs)
            self.heldout = corpus.tokenize_documents(tokenizer, heldout_docs)
            np.savez(cache, train=self.train, heldout=self.heldout)
        ids, counts = np.unique(self.train, return_counts=True)
        self.unseen = never_trained_types(ids, tokenizer.vocab_size)                      # types the stream never has
        self.by_frequency = ids[np.argsort(-counts, kind="stable")].astype(np.int32)  # (types,)
        self.unigram = self.train[self.train != tokenizer.bos_id]       # drawing from it draws by frequency
        if loss_types == 0:
            self.used = np.arange(tokenizer.vocab_size, dtype=np.int64)
        else:
            self.used = np.union1d(self.by_frequency[:loss_types], [tokenizer.bos_id, tokenizer.eos_id]).astype(np.int64)
        self.column = np.full(tokenizer.vocab_size, -1, np.int64)
        self.column[self.used] = np.arange(len(self.used))

    def copy_vocab(self, step: int, args) -> np.ndarray:
        """The most frequent types: copy_vocab_start for the first 30% of training (induction forms),
        then widening geometrically to copy_vocab_end at 80% (it generalises)."""
        progress = min(1.0, max(0.0, (step - 0.3 * args.steps) / (0.5 * args.steps)))
        size = args.copy_vocab_start * (args.copy_vocab_end / args.copy_vocab_start) ** progress
        words = self.by_frequency[self.by_frequency != self.tokenizer.bos_id]
        return words[: int(size)]

    def batch(self, step: int, args) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, seq + 1) rows and (batch, seq) loss weights of their targets.

        Rows: text windows, then natural-repeat rows (a span of the text written again later in the
        row; its second copy's tokens 2.. weigh copy_weight), then copy rows of random tokens with
        spans of 8 to 64 tokens (their first span weighs copy_first_weight).
        """
        rng = np.random.default_rng([args.seed, step])
        n_copy = int(round(args.batch * args.copy_fraction))
        n_natural = int(round(args.batch * args.natural_fraction))
        if n_copy + n_natural > args.batch:
            raise ValueError(f"--copy-fraction {args.copy_fraction} + --natural-fraction {args.natural_fraction} "
                             "exceed 1: lower one of them")
        rows = [corpus.text_batch(self.train, rng, args.batch - n_copy - n_natural, args.seq)]
        weights = [np.ones((args.batch - n_copy - n_natural, args.seq), np.float32)]
        natural, second = corpus.repeat_span_batch(self.train, rng, n_natural, args.seq, *args.natural_span)
        rows.append(natural)
        weights.append(np.where(second[:, 1:], np.float32(args.copy_weight), np.float32(1.0)))
        for k in range(n_copy):
            kind = args.copy_tokens[k % len(args.copy_tokens)]
            span = int(rng.integers(8, 65))
            if kind == "text":
                rows.append(corpus.passage_copy_batch(self.train, rng, 1, span, args.seq))
            elif kind == "phrases":
                rows.append(corpus.phrase_copy_batch(self.train, rng, 1, span, args.seq))
            else:
                vocab = self.copy_vocab(step, args) if kind == "uniform" else self.unigram
                rows.append(corpus.copy_batch(rng, vocab, 1, span, args.seq))
            weight = np.ones((1, args.seq), np.float32)
            weight[0, :span] = args.copy_first_weight                          # targets 1..span: the first copy
            weights.append(weight)
        return torch.from_numpy(np.concatenate(rows).astype(np.int64)), torch.from_numpy(np.concatenate(weights))


# ----------------------------------------------------------------------------- model

def init_model(cfg: ModelConfig, seed: int) -> Transformer:
    """Normal(0, 0.02) matrices; output projections of each block scaled down by sqrt(2 * n_layers)."""
    return random_init_(Transformer(cfg), seed, scale_residual_outputs=True)


def restricted_loss(model: Transformer, rows: torch.Tensor, data: Data, weights: torch.Tensor | None = None,
                    unseen_weight: float = 0.0) -> torch.Tensor:
    """Next-token cross-entropy over the used token types only (targets outside them are skipped),
    averaged with the per-target weights (batch, seq) when given; plus, with unseen_weight and the full
    softmax, that weight times unseen_loss."""
    used = torch.from_numpy(data.used).to(rows.device)
    h = model(rows[:, :-1], return_hidden=True)                                          # (batch, seq, dim)
    weight = model.output.weight if len(used) == model.cfg.vocab_size else model.output.weight[used]
    logits = h @ weight.T                                                                # (batch, seq, used)
    targets = torch.from_numpy(data.column).to(rows.device)[rows[:, 1:]]                 # (batch, seq)
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1,
                             reduction="none")                                           # (batch * seq,)
    w = torch.ones_like(losses) if weights is None else weights.reshape(-1).to(losses.device)
    w = w * (targets.reshape(-1) >= 0)
    loss = (losses * w).sum() / w.sum()
    if unseen_weight:
        if len(used) != model.cfg.vocab_size:
            raise ValueError("--unseen-weight needs the full softmax (--loss-types 0): the never-seen types' "
                             "logits are not computed otherwise")
        loss = loss + unseen_weight * unseen_loss(logits, data.unseen.to(rows.device))
    return loss


def unseen_loss(logits: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """Unlikelihood of the never-seen types as one set (Welleck et al. 2019, arXiv:1908.04319): the mean
    over positions of -log(1 - P), P their total probability.

    The cross-entropy lowers such a type's logit only in proportion to its probability, and a model
    without an output bias learns slowly to keep ~16,000 rows that never occur out of every context;
    this term says directly that none of them is ever the next token.
    """
    log_p = torch.logsumexp(logits[..., unseen], -1) - torch.logsumexp(logits, -1)        # (batch, seq)
    return -torch.log1p(-log_p.exp().clamp(max=1 - 1e-6)).mean()


def make_optimizer(model: Transformer, args) -> torch.optim.AdamW:
    """AdamW: decay on block matrices and the output (not embeddings or norms); wq, wk at qk_lr_scale."""
    groups = {"qk": [], "decay": [], "rest": []}
    for name, p in model.named_parameters():
        if name.endswith(("wq.weight", "wk.weight")):
            groups["qk"].append(p)
        elif p.dim() == 2 and name != "tok_embeddings.weight":
            groups["decay"].append(p)
        else:
            groups["rest"].append(p)
    return torch.optim.AdamW([
        {"params": groups["qk"], "weight_decay": args.weight_decay, "lr_scale": args.qk_lr_scale},
        {"params": groups["decay"], "weight_decay": args.weight_decay, "lr_scale": 1.0},
        {"params": groups["rest"], "weight_decay": 0.0, "lr_scale": 1.0}], lr=args.lr, betas=(0.9, 0.95))


def learning_rate(step: int, args) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# ----------------------------------------------------------------------------- state on disk

def save_state(model: Transformer, optimizer: torch.optim.AdamW, step: int, work: Path) -> None:
    """Weights and Adam moments as safetensors (never pickle) plus the step, written atomically."""
    tensors = {f"model.{n}": p.detach() for n, p in model.named_parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    for p, state in optimizer.state.items():
        tensors[f"exp_avg.{names[id(p)]}"] = state["exp_avg"]
        tensors[f"exp_avg_sq.{names[id(p)]}"] = state["exp_avg_sq"]
    write_safetensors(work / "state.tmp", tensors, {"step": step})
    (work / "state.tmp").replace(work / "state.safetensors")


def load_state(model: Transformer, optimizer: torch.optim.AdamW, work: Path) -> int:
    """Restore what save_state wrote; returns the next step (0 when there is no state)."""
    path = work / "state.safetensors"
    if not path.is_file():
        return 0
    st = SafetensorsFile(path)
    step = int(st.metadata["step"])
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(st.read(f"model.{n}"))
    for n, p in model.named_parameters():
        if f"exp_avg.{n}" in st.entries:
            optimizer.state[p] = {"step": torch.tensor(float(step)), "exp_avg": st.read(f"exp_avg.{n}").to(p.device),
                                  "exp_avg_sq": st.read(f"exp_avg_sq.{n}").to(p.device)}
    return step


def load_init(model: Transformer, folder: Path) -> None:
    """Start from a saved checkpoint (fine-tuning), e.g. the shipped default, instead of a random init."""
    source = load_model(folder, verbose=False)
    if source.cfg != model.cfg:
        raise ValueError(f"{folder} holds a {source.cfg} model, not the {model.cfg} this script trains")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(source.state_dict()[name].to(p.dtype))


def export(model: Transformer, data: Data, folder: Path) -> Path:
    """Write the Mistral layout in bf16, giving each never-trained output row the mean used row
    (with the full softmax every row was trained, and none is replaced)."""
    unused = torch.ones(model.cfg.vocab_size, dtype=torch.bool)
    unused[torch.from_numpy(data.used)] = False
    with torch.no_grad():
        weight = model.output.weight.detach().clone()
        unused = unused.to(weight.device)
        if unused.any():
            weight[unused] = weight[~unused].mean(dim=0)
        original = model.output.weight.data
        model.output.weight.data = weight
        save_consolidated(model, folder)
        model.output.weight.data = original
    return folder


def write_heldout_sample(path: Path) -> None:
    """Ship the held-out documents (public domain), one per line, for CI to measure the model on."""
    _, heldout = corpus.split_documents(corpus.documents())
    path.write_text("\n".join(heldout) + "\n", encoding="utf-8")


SAMPLE_PROMPTS = ("And the king said", "In the beginning", "The program", "A hacker is")


def print_samples(folder: Path, tokenizer) -> None:
    """Greedy continuations from the exported checkpoint, loaded the way users load it."""
    model = load_model(folder, verbose=False)
    for prompt in SAMPLE_PROMPTS:
        new = generate(model, tokenizer.encode(prompt), max_new_tokens=24, stop_at_eos=True)
        print(f"{prompt!r} -> {tokenizer.decode(new)!r}")


# ----------------------------------------------------------------------------- evaluation

def evaluate_targets(model: Transformer, data: Data) -> dict:
    """The issue's copying measurements, the loss by position and over every 128-token held-out window,
    and the mass on never-trained types over 16 windows: the curve each run logs (analysis's definitions)."""
    stream = data.heldout
    windows = heldout_windows(stream)                                                    # (283, 129)
    sample = windows[torch.linspace(0, len(windows) - 1, 16).long()]                      # (16, 129)
    unseen = never_trained_types(corpus.train_types(), model.cfg.vocab_size)
    model.eval()
    result = {**copying_targets(model, data.tokenizer, stream), "window_loss": window_loss(model, stream),
              "position_loss": position_bucket_losses(model, stream),
              "unseen_mass_16": type_mass(model, sample, unseen).mean().item()}
    model.train()
    return result


def evaluate(model: Transformer, data: Data, args) -> dict:
    """Held-out loss (used types) and the best head of each kind, on fixed batches."""
    rng = np.random.default_rng(12345)
    text = torch.from_numpy(corpus.text_batch(data.heldout, rng, 16, args.seq).astype(np.int64)).to(args.device)
    words = word_token_ids(data.tokenizer, data.tokenizer.decode(data.heldout.tolist()))
    copied = set(data.copy_vocab(args.steps, args).tolist())
    never_copied = [w for w in words if w not in copied]
    model.eval()
    with torch.no_grad():
        loss = float(restricted_loss(model, text, data))
        repeated = repeated_random_tokens(words, 16, 50, seed=0).to(args.device)
        induction = induction_scores(model, repeated, 50)
        duplicate = duplicate_token_scores(model, repeated, 50)
        unseen = induction_scores(model, repeated_random_tokens(never_copied, 16, 50, seed=0).to(args.device), 50)
        previous = previous_token_scores(model, text)
        sink = first_token_scores(model, text)
    model.train()
    return {"heldout_loss": loss, "previous_token": top_heads(previous, 3), "induction": top_heads(induction, 3),
            "induction_never_copied": top_heads(unseen, 2), "duplicate_token": top_heads(duplicate, 2),
            "first_token": top_heads(sink, 3), "n_words": len(words), "n_never_copied": len(never_copied)}


def train(args) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer()
    torch.set_num_threads(args.threads)
    data = Data(tokenizer, args.work, args.loss_types)
    model = init_model(ModelConfig.tiny(), args.seed).to(args.device)
    optimizer = make_optimizer(model, args)
    step = load_state(model, optimizer, args.work)
    if step == 0 and args.init is not None:
        load_init(model, args.init)
    if args.export_only:
        print(json.dumps(evaluate(model, data, args)))
        print("exported to", export(model, data, args.out))
        print(json.dumps(default_targets(load_model(args.out, verbose=False), tokenizer)))
        if args.write_heldout:
            write_heldout_sample(args.out / "heldout.txt")
        print_samples(args.out, tokenizer)
        return
    covered = np.isin(data.train, data.used).mean()
    print(f"{len(data.train):,} train tokens, {len(data.heldout):,} held-out; the loss covers {len(data.used):,} "
          f"types ({covered:.1%} of train tokens); "
          f"starting at step {step}", flush=True)
    model.train()
    start, losses = time.time(), []
    last = args.steps if args.until is None else min(args.until, args.steps)
    bar = progress(last - step, "training the default", unit="step", verbose=not args.quiet)
    while step < last:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args) * group["lr_scale"]
        rows, weights = data.batch(step, args)
        loss = restricted_loss(model, rows.to(args.device), data, weights.to(args.device), args.unseen_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % 20 == 0:
            bar.write(f"step {step} loss {np.mean(losses[-20:]):.3f} lr {learning_rate(step, args):.2e} "
                      f"{time.time() - start:.0f}s")
        if step % args.checkpoint_every == 0 or step == last:
            save_state(model, optimizer, step, args.work)
        if step % args.eval_every == 0 or step == last:
            bar.write(f"eval step {step}: " + json.dumps({**evaluate(model, data, args),
                                                           **evaluate_targets(model, data)}))
    bar.close()


if __name__ == "__main__":
    train(parse_args())
