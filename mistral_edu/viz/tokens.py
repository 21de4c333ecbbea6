"""Tokenizer pictures: a text's pieces as coloured boxes, the vocabulary's shape, token counts by language."""
from __future__ import annotations

import html

import numpy as np

from .figure import finish, new_figure, tidy

PIECE_COLOURS = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad")
BYTE_COLOUR = "#e0e0e0"


def pieces_html(tok, ids) -> str:
    """Token ids as coloured boxes: the piece on top (▁ marks a leading space), the id below.

    Byte-fallback pieces (<0x..>) are grey, so you can see where the vocabulary ran out.
    """
    boxes = []
    for n, i in enumerate(ids):
        piece = tok.id_to_piece(int(i))
        is_byte = piece.startswith("<0x") and piece.endswith(">")
        colour = BYTE_COLOUR if is_byte else PIECE_COLOURS[n % len(PIECE_COLOURS)]
        boxes.append(
            f'<span style="display:inline-block;margin:2px;padding:2px 4px;border-radius:4px;'
            f'background:{colour};color:#000;font-family:monospace;text-align:center">'
            f'{html.escape(piece)}<br><span style="font-size:70%;color:#555">{int(i)}</span></span>')
    return f'<div style="line-height:2.2">{"".join(boxes)}</div>'


def show_pieces(tok, text: str, bos: bool = False):
    """Display text's pieces coloured, with their ids (an IPython HTML object)."""
    from IPython.display import HTML
    ids = tok.encode(text, bos=bos)
    return HTML(f"<div>{len(ids)} tokens for {len(text)} characters</div>" + pieces_html(tok, ids))


def token_count_chart(rows, save=None):
    """rows: (label, characters, tokens, byte_pieces). Tokens per sample, and tokens per character."""
    labels = [r[0] for r in rows]
    chars = np.array([r[1] for r in rows])
    tokens = np.array([r[2] for r in rows])
    byte_pieces = np.array([r[3] for r in rows])
    fig = new_figure(9, 1.4 + 0.3 * len(rows))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh(labels, tokens - byte_pieces, color="#4e79a7", label="vocabulary pieces")
    ax1.barh(labels, byte_pieces, left=tokens - byte_pieces, color="#bab0ac", label="byte-fallback pieces")
    ax1.set_xlabel("tokens for the same sentence")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.invert_yaxis()
    ax2.barh(labels, tokens / chars, color="#59a14f")
    ax2.set_xlabel("tokens per character")
    for ax in (ax1, ax2):
        tidy(ax)
    fig.suptitle("One sentence, many languages: what it costs in tokens")
    return finish(fig, save)


def vocabulary_chart(tok, save=None):
    """What the 32,000 pieces look like: their lengths, with and without the leading ▁, and the special ids."""
    pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    is_byte = np.array([p.startswith("<0x") and p.endswith(">") for p in pieces])
    starts_word = np.array([p.startswith("▁") for p in pieces])
    lengths = np.array([len(p.lstrip("▁")) for p in pieces])
    fig = new_figure(7, 3.2)
    ax = tidy(fig.add_subplot())
    ordinary = ~is_byte & (np.arange(len(pieces)) > 2)
    ax.hist([lengths[ordinary & starts_word], lengths[ordinary & ~starts_word]], bins=np.arange(0.5, 17.5, 1),
            stacked=True, color=["#4e79a7", "#f28e2b"], label=["starts a word (▁...)", "continues a word"])
    ax.set_xticks(range(1, 17))
    ax.set_xlabel("characters in the piece (without ▁)")
    ax.set_ylabel("pieces")
    ax.set_title(f"The {tok.vocab_size:,} pieces: {int(is_byte.sum())} bytes, 3 special, the rest learnt by BPE")
    ax.legend(fontsize=8)
    return finish(fig, save)
