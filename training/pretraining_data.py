"""BERT's pretraining examples: next-sentence pairs packed to a fixed length, and dynamic MLM masking.

Pairs follow Google BERT's ``create_pretraining_data.py``: per document, sentences are gathered into a
chunk until it reaches the target length (``max_seq_length - 3``; with ``short_seq_probability`` a
shorter random target, so the model also sees short inputs); the chunk is cut at a random sentence
boundary into segment A and segment B. With probability ``nsp_probability`` segment B is replaced by a
run of sentences from a random *other* document (label 1) and the unused sentences are put back; else B
is the true continuation (label 0, `transformers`' convention). A chunk of a single sentence can only
make a random pair. Over-long pairs lose tokens from the front or back of the longer segment.

Every document draws from its own generator seeded by ``(seed, document index)``, so the pairs do not
depend on ``num_proc`` or on how `datasets.map` batches the documents. Masking is not done here: the
collator masks every batch afresh (dynamic masking, as RoBERTa), so each epoch sees new masks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from .corpus import read_documents


logger = logging.getLogger(__name__)

TokenIds = list[int]
PAIR_FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "token_type_ids": datasets.Sequence(datasets.Value("int8")),
        "attention_mask": datasets.Sequence(datasets.Value("int8")),
        "next_sentence_label": datasets.Value("int8"),
    }
)
IS_NEXT, IS_RANDOM = 0, 1


def truncate_pair(tokens_a: TokenIds, tokens_b: TokenIds, max_num_tokens: int, rng: np.random.Generator) -> None:
    """Shorten the longer segment, one token at a time from a random end, until the pair fits (in place)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def document_pairs(
    document: Sequence[TokenIds],
    document_index: int,
    num_documents: int,
    get_document: Callable[[int], Sequence[TokenIds]],
    max_num_tokens: int,
    nsp_probability: float = 0.5,
    short_seq_probability: float = 0.1,
    seed: int = 0,
) -> list[tuple[TokenIds, TokenIds, int]]:
    """The ``(segment A, segment B, label)`` pairs of one document (sentences given as token ids).

    ``get_document(j)`` returns document ``j``'s sentences; it is called only for random segments, and
    never with ``document_index``. Label 0: B continues A; label 1: B comes from another document.
    """
    rng = np.random.default_rng([seed, document_index])
    target_length = max_num_tokens
    if rng.random() < short_seq_probability:
        target_length = int(rng.integers(2, max_num_tokens + 1))

    pairs: list[tuple[TokenIds, TokenIds, int]] = []
    chunk: list[TokenIds] = []
    chunk_length = 0
    index = 0
    while index < len(document):
        chunk.append(document[index])
        chunk_length += len(document[index])
        if index == len(document) - 1 or chunk_length >= target_length:
            split = 1 if len(chunk) == 1 else int(rng.integers(1, len(chunk)))
            tokens_a = [token for sentence in chunk[:split] for token in sentence]
            if len(chunk) == 1 or rng.random() < nsp_probability:
                if num_documents < 2:
                    raise ValueError("next-sentence pairs need at least two documents to draw random segments from")
                label = IS_RANDOM
                other = int(rng.integers(0, num_documents - 1))
                other += other >= document_index  # uniform over the other documents
                random_document = get_document(other)
                tokens_b: TokenIds = []
                for sentence in random_document[int(rng.integers(0, len(random_document))) :]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target_length - len(tokens_a):
                        break
                index -= len(chunk) - split  # the unused sentences start the next chunk
            else:
                label = IS_NEXT
                tokens_b = [token for sentence in chunk[split:] for token in sentence]
            truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
            if tokens_a and tokens_b:
                pairs.append((tokens_a, tokens_b, label))
            chunk, chunk_length = [], 0
        index += 1
    return pairs


def _tokenize_documents(batch: dict[str, list], tokenizer) -> dict[str, list]:
    sentences = [sentence for document in batch["sentences"] for sentence in document]
    ids = tokenizer(sentences, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
    documents, position = [], 0
    for document in batch["sentences"]:
        tokenized = [sentence for sentence in ids["input_ids"][position : position + len(document)] if sentence]
        position += len(document)
        if tokenized:
            documents.append(tokenized)
    return {"sentence_ids": documents}


def _pair_batch(
    batch: dict[str, list],
    indices: list[int],
    documents: datasets.Dataset,
    cls_token_id: int,
    sep_token_id: int,
    max_seq_length: int,
    nsp_probability: float,
    short_seq_probability: float,
    seed: int,
) -> dict[str, list]:
    output: dict[str, list] = {name: [] for name in PAIR_FEATURES}
    for document, document_index in zip(batch["sentence_ids"], indices):
        pairs = document_pairs(
            document,
            document_index,
            len(documents),
            lambda other: documents[other]["sentence_ids"],
            max_num_tokens=max_seq_length - 3,
            nsp_probability=nsp_probability,
            short_seq_probability=short_seq_probability,
            seed=seed,
        )
        for tokens_a, tokens_b, label in pairs:
            output["input_ids"].append([cls_token_id, *tokens_a, sep_token_id, *tokens_b, sep_token_id])
            output["token_type_ids"].append([0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1))
            output["attention_mask"].append([1] * (len(tokens_a) + len(tokens_b) + 3))
            output["next_sentence_label"].append(label)
    return output


def build_pretraining_dataset(
    sources: str | os.PathLike | list[str | os.PathLike],
    tokenizer,
    max_seq_length: int = 128,
    nsp_probability: float = 0.5,
    seed: int = 0,
    num_proc: int | None = None,
    cache_dir: str | None = None,
    short_seq_probability: float = 0.1,
    text_format: str = "auto",
) -> datasets.Dataset:
    """NSP sentence pairs of ``sources`` (text files or a Hub dataset name, see `training.corpus`).

    Columns: ``input_ids`` (``[CLS] A [SEP] B [SEP]``, at most ``max_seq_length`` long, unpadded),
    ``token_type_ids``, ``attention_mask`` and ``next_sentence_label`` (0: B continues A, 1: B is random).
    Documents are read, tokenized and paired with `datasets.map` (``num_proc`` workers), and every step is
    cached under ``cache_dir`` (the `datasets` cache when ``None``), so a second call with the same inputs
    is read back from disk. Pass the result and a `PretrainingCollator` to the `Trainer`.
    """
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length: expected at least 5 ([CLS] a [SEP] b [SEP]), got {max_seq_length}")
    if not 0.0 <= nsp_probability <= 1.0 or not 0.0 <= short_seq_probability <= 1.0:
        raise ValueError(
            "nsp_probability and short_seq_probability must lie in [0, 1], "
            f"got {nsp_probability} and {short_seq_probability}"
        )
    documents = read_documents(sources, text_format=text_format, cache_dir=cache_dir)
    tokenized = documents.map(
        _tokenize_documents,
        batched=True,
        num_proc=num_proc,
        remove_columns=documents.column_names,
        fn_kwargs={"tokenizer": tokenizer},
        desc="Tokenizing sentences",
    )
    pairs = tokenized.map(
        _pair_batch,
        batched=True,
        batch_size=100,
        with_indices=True,
        num_proc=num_proc,
        remove_columns=tokenized.column_names,
        features=PAIR_FEATURES,
        fn_kwargs={
            "documents": tokenized,
            "cls_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "max_seq_length": max_seq_length,
            "nsp_probability": nsp_probability,
            "short_seq_probability": short_seq_probability,
            "seed": seed,
        },
        desc="Building next-sentence pairs",
    )
    if len(pairs) == 0:
        raise ValueError(f"{sources}: no sentence pairs could be built (every document is empty after tokenization)")
    random_share = float(np.mean(pairs["next_sentence_label"]))
    logger.info(
        "%d pretraining pairs from %d documents, %.1f%% with a random second segment",
        len(pairs),
        len(tokenized),
        100 * random_share,
    )
    return pairs


class PretrainingCollator:
    """Pads a batch of NSP pairs and masks it afresh: BERT's 15% of tokens, 80% ``[MASK]`` / 10% random / 10% kept.

    Returns ``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels`` (the original token at masked
    positions, -100 elsewhere) and ``next_sentence_label``. ``[CLS]``, ``[SEP]`` and padding are never
    masked; every other token (``[UNK]`` included, as in BERT) may be. Random replacements are drawn from
    the whole vocabulary, as BERT does.

    With ``seed=None`` masks come from torch's global generator, which `Trainer` seeds and restores when
    resuming from a checkpoint. With a seed, each (process rank, data-loader worker) gets its own generator
    seeded from ``(seed, rank, worker)``, so workers and processes never repeat each other's masks.
    """

    def __init__(
        self,
        tokenizer,
        mlm_probability: float = 0.15,
        mask_replace_probability: float = 0.8,
        random_replace_probability: float = 0.1,
        seed: int | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        for name, value in (
            ("mlm_probability", mlm_probability),
            ("mask_replace_probability", mask_replace_probability),
            ("random_replace_probability", random_replace_probability),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
        if mask_replace_probability + random_replace_probability > 1.0:
            raise ValueError("mask_replace_probability + random_replace_probability must not exceed 1")
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no [MASK] token, which masked language modelling needs")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.mask_replace_probability = mask_replace_probability
        self.random_replace_probability = random_replace_probability
        self.seed = seed
        self.pad_to_multiple_of = pad_to_multiple_of
        self.never_masked = torch.tensor(
            sorted({tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}), dtype=torch.long
        )
        self._generators: dict[tuple[int, int], torch.Generator] = {}

    def _generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        rank = (
            torch.distributed.get_rank()
            if torch.distributed.is_available() and torch.distributed.is_initialized()
            else 0
        )
        worker = torch.utils.data.get_worker_info()
        key = (rank, worker.id if worker is not None else -1)
        if key not in self._generators:
            state = np.random.SeedSequence([self.seed, key[0], key[1] + 1]).generate_state(1, dtype=np.uint64)[0]
            self._generators[key] = torch.Generator().manual_seed(int(state))
        return self._generators[key]

    def mask_tokens(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input ids, labels)`` for a padded ``(batch, seq)`` tensor of token ids."""
        generator = self._generator()
        probability = torch.full(input_ids.shape, self.mlm_probability)
        probability.masked_fill_(torch.isin(input_ids, self.never_masked), 0.0)
        masked = torch.bernoulli(probability, generator=generator).bool()
        labels = input_ids.masked_fill(~masked, -100)
        decision = torch.rand(input_ids.shape, generator=generator)
        to_mask_token = masked & (decision < self.mask_replace_probability)
        to_random_token = (
            masked
            & (decision >= self.mask_replace_probability)
            & (decision < self.mask_replace_probability + self.random_replace_probability)
        )
        random_tokens = torch.randint(len(self.tokenizer), input_ids.shape, generator=generator, dtype=input_ids.dtype)
        masked_ids = input_ids.masked_fill(to_mask_token, self.tokenizer.mask_token_id)
        masked_ids = torch.where(to_random_token, random_tokens, masked_ids)
        return masked_ids, labels

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        model_inputs = [
            {name: example[name] for name in ("input_ids", "token_type_ids", "attention_mask") if name in example}
            for example in examples
        ]
        batch = self.tokenizer.pad(
            model_inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"
        )
        batch = {name: tensor.long() for name, tensor in batch.items()}
        batch["input_ids"], batch["labels"] = self.mask_tokens(batch["input_ids"])
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor([int(example["next_sentence_label"]) for example in examples])
        return batch
