"""The embedded default's training text, its held-out split, and the repeated-span sequences.

The corpus is public-domain English that any Debian machine can install: the King James Bible
(package bible-kjv, printed with its `bible` program) and the Jargon File 4.4.7 (package
jargon-text). Documents are Bible chapters and Jargon File paragraphs; every 40th document is held
out. A sample of the held-out text ships as default/heldout.txt so CI can measure the model on
text it never trained on without installing either package.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

JARGON_FILE = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
HELDOUT_SAMPLE = Path(__file__).parent / "heldout.txt"
HELDOUT_EVERY = 40
INSTALL_HINT = "install the corpus with `apt-get install bible-kjv jargon-text` (Debian/Ubuntu)"


def kjv_chapters() -> list[str]:
    """The King James Bible, one string per chapter, verse numbers removed."""
    if shutil.which("bible") is None:
        raise FileNotFoundError(f"the `bible` program is missing: {INSTALL_HINT}")
    out = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    chapters: dict[str, list[str]] = {}
    for line in out.splitlines():
        match = re.match(r"^(\w*?\d*[A-Za-z]+\d+):\d+ (.*)$", line)
        if match:
            chapters.setdefault(match.group(1), []).append(match.group(2).strip())
    if len(chapters) < 1000:
        raise ValueError(f"`bible` printed only {len(chapters)} chapters; reinstall bible-kjv-text")
    return [" ".join(verses) for verses in chapters.values()]


def jargon_paragraphs() -> list[str]:
    """The Jargon File's prose paragraphs (tables, rules and the contents list dropped)."""
    if not JARGON_FILE.is_file():
        raise FileNotFoundError(f"{JARGON_FILE} is missing: {INSTALL_HINT}")
    text = gzip.decompress(JARGON_FILE.read_bytes()).decode("utf-8")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        if re.search(r"[\u2500-\u257f]", block):
            continue
        joined = " ".join(block.split())
        if len(joined.split()) >= 8:
            paragraphs.append(joined)
    return paragraphs


def documents() -> list[str]:
    """Every document of the corpus, in a fixed order."""
    return kjv_chapters() + jargon_paragraphs()


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    """(train, held-out): every HELDOUT_EVERY-th document is held out."""
    train = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    heldout = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    return train, heldout


def heldout_sample() -> list[str]:
    """The shipped held-out documents, one per line."""
    return [line for line in HELDOUT_SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def tokenize_documents(tokenizer, docs: list[str]) -> np.ndarray:
    """All documents as one id stream, each starting with BOS, as int32."""
    ids: list[int] = []
    for doc in docs:
        ids.extend(tokenizer.encode(doc, bos=True))
    return np.asarray(ids, dtype=np.int32)


def text_batch(stream: np.ndarray, rng: np.random.Generator, batch: int, seq: int) -> np.ndarray:
    """(batch, seq + 1) windows of the id stream at random offsets; each row starts with BOS (1)."""
    starts = rng.integers(0, len(stream) - seq, size=batch)
    rows = stream[starts[:, None] + np.arange(seq)]                # (batch, seq), also for batch 0
    return np.concatenate([np.ones((batch, 1), np.int32), rows], axis=1)


def copy_batch(rng: np.random.Generator, vocab: np.ndarray, batch: int, span: int, seq: int) -> np.ndarray:
    """(batch, seq + 1): BOS, then `span` random tokens from vocab repeated until the row is full.

    Only the first copy is unpredictable; every later token is predictable by looking back one span,
    which is what makes an induction head worth learning.
    """
    spans = vocab[rng.integers(0, len(vocab), size=(batch, span))]   # (batch, span)
    body = np.tile(spans, (1, -(-seq // span)))[:, :seq]            # (batch, seq)
    return np.concatenate([np.ones((batch, 1), np.int32), body.astype(np.int32)], axis=1)


def repeat_span_batch(stream: np.ndarray, rng: np.random.Generator, batch: int, seq: int, span_min: int,
                      span_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch, seq + 1) rows of running text in which a span of the row is written again later, and a
    (batch, seq + 1) mask of the second copy's tokens 2.. (those the first copy predicts).

    Each row: BOS, a window of the stream up to an insertion point, a copy of an earlier span of
    that window (span_min to span_max tokens), then the text goes on from the insertion point. So
    copying is useful exactly where natural text repeats itself, at any distance the row allows.
    """
    if not 2 <= span_min <= span_max or 2 * span_max > seq:
        raise ValueError(f"need 2 <= span_min <= span_max <= seq / 2, got {span_min}, {span_max}, seq {seq}")
    rows = np.ones((batch, seq + 1), np.int32)
    second = np.zeros((batch, seq + 1), bool)
    for r in range(batch):
        span = int(rng.integers(span_min, span_max + 1))
        start = int(rng.integers(0, len(stream) - seq))
        window = stream[start:start + seq]                                         # (seq,)
        source = int(rng.integers(0, seq - 2 * span + 1))
        insert = int(rng.integers(source + span, seq - span + 1))
        body = np.concatenate([window[:insert], window[source:source + span], window[insert:]])[:seq]
        rows[r, 1:] = body
        second[r, 1 + insert + 1:1 + insert + span] = True
    return rows, second


def passage_copy_batch(stream: np.ndarray, rng: np.random.Generator, batch: int, span: int, seq: int) -> np.ndarray:
    """(batch, seq + 1): BOS, then a passage of `span` consecutive stream tokens repeated until the row is full.

    copy_batch's shape with running text instead of random tokens: the repeats look like prose in
    every respect but the repetition itself, so a model cannot learn to copy only where text looks random.
    """
    starts = rng.integers(0, len(stream) - span, size=batch)
    spans = stream[starts[:, None] + np.arange(span)]                  # (batch, span)
    body = np.tile(spans, (1, -(-seq // span)))[:, :seq]              # (batch, seq)
    return np.concatenate([np.ones((batch, 1), np.int32), body.astype(np.int32)], axis=1)


def phrase_copy_batch(stream: np.ndarray, rng: np.random.Generator, batch: int, span: int, seq: int,
                      run: tuple[int, int] = (2, 6)) -> np.ndarray:
    """(batch, seq + 1): BOS, then `span` tokens made of short runs of consecutive stream tokens (2 to 6 each,
    from random places), repeated until the row is full.

    Locally the span reads like prose, as a whole it is a jumble: one matching token predicts little in it
    (common words recur within it), so copying it pays only by matching several tokens back, which is what
    copying running prose needs.
    """
    rows = np.empty((batch, span), np.int32)
    for row in rows:
        pieces, length = [], 0
        while length < span:
            n = int(rng.integers(run[0], run[1] + 1))
            start = int(rng.integers(0, len(stream) - n))
            pieces.append(stream[start:start + n])
            length += n
        row[:] = np.concatenate(pieces)[:span]
    body = np.tile(rows, (1, -(-seq // span)))[:, :seq]                # (batch, seq)
    return np.concatenate([np.ones((batch, 1), np.int32), body], axis=1)


HELDOUT_LABELLED = Path(__file__).parent / "heldout_labelled.jsonl"


def quotation_spans(text: str) -> list[tuple[int, int]]:
    """Character spans strictly inside each “double-quoted” stretch (the marks themselves excluded).

    Only the curly double marks count: the Jargon File uses ‘single’ marks for quoted words too,
    but its apostrophes are the same character as a closing single mark, so they cannot be paired.
    """
    return [(m.start() + 1, m.end() - 1) for m in re.finditer("“[^“”]*”", text)]


def labelled_heldout_documents() -> list[dict]:
    """The held-out documents with their source ("bible" or "jargon") and quotation spans.

    Built from the installed packages by the same split as training, so every passage is one the
    model never trained on; the text equals heldout.txt line for line.
    """
    bible, jargon = kjv_chapters(), jargon_paragraphs()
    return [{"document": i, "source": "bible" if i < len(bible) else "jargon", "text": doc,
             "quoted": quotation_spans(doc)}
            for i, doc in enumerate(bible + jargon) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]


def write_labelled_heldout(path: Path = HELDOUT_LABELLED) -> None:
    """Write heldout_labelled.jsonl: one JSON object per held-out document (needs both packages)."""
    lines = [json.dumps(record, ensure_ascii=False) for record in labelled_heldout_documents()]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def heldout_labelled() -> list[dict]:
    """The shipped labelled held-out documents: dicts with document, source, text and quoted spans."""
    return [json.loads(line) for line in HELDOUT_LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


TRAIN_TYPES = Path(__file__).parent / "train_types.json"


def write_train_types(tokenizer, path: Path = TRAIN_TYPES) -> None:
    """Write train_types.json: every token type of the training stream (needs both packages), with provenance.

    Types outside it have output rows that training never pushed up or down; CI measures the
    probability a model puts on them without installing the corpus.
    """
    train, _ = split_documents(documents())
    stream = tokenize_documents(tokenizer, train)
    record = {"what": "the token ids that occur in the embedded default's training stream (held-out documents excluded)",
              "made_with": "mistral_edu.default.corpus.write_train_types(load_tokenizer()), mistral-common's v1 "
                           "tokenizer, bible-kjv 4.38 and jargon-text 4.4.7-4.1",
              "train_tokens": int(len(stream)), "types": np.unique(stream).tolist()}
    Path(path).write_text(json.dumps(record) + "\n", encoding="utf-8")


def train_types() -> np.ndarray:
    """The shipped sorted ids of the token types in the training stream (train_types.json)."""
    return np.asarray(json.loads(TRAIN_TYPES.read_text(encoding="utf-8"))["types"], dtype=np.int64)
