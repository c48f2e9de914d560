"""The BERT WordPiece tokenizer, from a `vocab.txt` or from a tokenizer directory saved beside a checkpoint.

`transformers` v5's `BertTokenizerFast(vocab_file=...)` silently ignores the file and builds an empty
vocabulary, so a vocabulary file goes through `BertTokenizer(vocab=...)` (the `tokenizers`-backed class in
v5), and a directory through `BertTokenizer.from_pretrained`. Either way the result is a fast tokenizer
(offset mappings for SQuAD) that `save_pretrained` writes so that `AutoTokenizer.from_pretrained` loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import BertTokenizer


REQUIRED_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DEFAULT_MODEL_MAX_LENGTH = 512  # BERT's position embeddings; a bare vocab.txt carries no limit


def load_tokenizer(
    path: str | os.PathLike, do_lower_case: bool = True, model_max_length: int = DEFAULT_MODEL_MAX_LENGTH
) -> BertTokenizer:
    """A `BertTokenizer` from a WordPiece ``vocab.txt`` (one token per line) or a saved tokenizer directory.

    ``do_lower_case`` and ``model_max_length`` apply to a vocabulary file only; a saved directory keeps
    the settings it was saved with. A vocabulary lacking one of BERT's special tokens is rejected here,
    since pretraining and finetuning would otherwise fail later with a less helpful message.
    """
    path = Path(path)
    if path.is_dir():
        return BertTokenizer.from_pretrained(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer: {path} is neither a vocab.txt file nor a saved tokenizer directory")
    with path.open(encoding="utf-8") as handle:
        tokens = {line.rstrip("\n") for line in handle}
    missing = [token for token in REQUIRED_SPECIAL_TOKENS if token not in tokens]
    if missing:
        raise ValueError(
            f"{path}: not a BERT WordPiece vocabulary (one token per line): missing special tokens {missing}"
        )
    return BertTokenizer(vocab=str(path), do_lower_case=do_lower_case, model_max_length=model_max_length)
