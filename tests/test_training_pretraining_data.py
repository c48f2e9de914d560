"""Raw text → documents → BERT's next-sentence pairs → dynamically masked batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.corpus import iter_documents, parse_source, read_documents
from training.pretraining_data import IS_NEXT, IS_RANDOM, PretrainingCollator, build_pretraining_dataset, document_pairs
from training.tokenization import load_tokenizer

from conftest import DEMO_DATA, FULL_DATA, data_sources


VOCAB = Path(__file__).resolve().parent / "fixtures" / "training" / "vocab.txt"  # words of these tests + characters

WIKITEXT_SAMPLE = "\n".join(  # WikiText lines keep their leading and trailing spaces
    [
        " = First Article = ",
        " ",
        " The first article has two sentences . It costs 2 @,@ 000 dollars and is 1 @.@ 5 m long . ",
        " = = History = = ",
        " A well @-@ known fact follows here . ",
        "",
        " = Second Article = ",
        " Only one sentence here . ",
        " = Third Article = ",
    ]
)

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def plain_corpus(num_documents: int = 12, sentences_per_document: int = 10, seed: int = 0) -> str:
    """Blank-line-separated documents of short, capitalised sentences made from ``WORDS``."""
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(num_documents):
        sentences = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(3, 7)))).capitalize() + " ."
            for _ in range(sentences_per_document)
        ]
        documents.append(" ".join(sentences))
    return "\n\n".join(documents) + "\n"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(VOCAB)


def test_wikitext_articles_are_documents_headings_dropped_escapes_joined():
    documents = list(iter_documents(WIKITEXT_SAMPLE.splitlines(), "wikitext"))
    assert documents == [
        [
            "The first article has two sentences .",
            "It costs 2,000 dollars and is 1.5 m long .",
            "A well-known fact follows here .",
        ],
        ["Only one sentence here ."],
    ]  # the third article has no text


def test_plain_text_documents_are_separated_by_blank_lines():
    lines = [
        "One sentence. Two sentences!",
        "Third line here?",
        "",
        "",
        "Next document. Lower case after. no split here",
    ]
    assert list(iter_documents(lines, "plain")) == [
        ["One sentence.", "Two sentences!", "Third line here?"],
        ["Next document.", "Lower case after. no split here"],
    ]


def test_sources_are_files_or_hub_names_and_path_typos_are_reported(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Some text.\n")
    assert parse_source(corpus) == ("file", str(corpus), None)
    assert parse_source("wikitext:wikitext-2-raw-v1") == ("hub", "wikitext", "wikitext-2-raw-v1")
    assert parse_source("Salesforce/wikitext") == ("hub", "Salesforce/wikitext", None)
    with pytest.raises(FileNotFoundError, match="missing.txt: no such file"):
        parse_source(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="must be a file, got a directory"):
        parse_source(tmp_path)


def _numbered_documents(num_documents: int, sentences: int, tokens_per_sentence: int = 4) -> list[list[list[int]]]:
    """Token id = document · 10⁴ + position in the document, so every token tells where it came from."""
    documents = []
    for document in range(num_documents):
        positions = iter(range(sentences * tokens_per_sentence))
        documents.append(
            [[document * 10_000 + next(positions) for _ in range(tokens_per_sentence)] for _ in range(sentences)]
        )
    return documents


def _all_pairs(documents, max_num_tokens, nsp_probability=0.5, short_seq_probability=0.0, seed=0):
    pairs = []
    for index, document in enumerate(documents):
        for tokens_a, tokens_b, label in document_pairs(
            document,
            index,
            len(documents),
            documents.__getitem__,
            max_num_tokens,
            nsp_probability,
            short_seq_probability,
            seed,
        ):
            pairs.append((index, tokens_a, tokens_b, label))
    return pairs


def test_true_pairs_are_consecutive_and_random_pairs_come_from_another_document():
    documents = _numbered_documents(num_documents=40, sentences=30)
    pairs = _all_pairs(documents, max_num_tokens=29)
    assert pairs
    for document, tokens_a, tokens_b, label in pairs:
        assert tokens_a and tokens_b and len(tokens_a) + len(tokens_b) <= 29
        assert {token // 10_000 for token in tokens_a} == {document}
        sources_b = {token // 10_000 for token in tokens_b}
        if label == IS_NEXT:
            assert sources_b == {document}
            # no sentence is lost between A and B: truncation removes under one sentence (4 tokens)
            assert 0 < min(tokens_b) - max(tokens_a) <= 4
        else:
            assert len(sources_b) == 1 and document not in sources_b
    random_share = np.mean([label == IS_RANDOM for *_, label in pairs])
    assert 0.42 <= random_share <= 0.6, random_share


def test_pairs_are_reproducible_per_document_and_change_with_the_seed():
    documents = _numbered_documents(num_documents=5, sentences=12)
    assert _all_pairs(documents, 29, seed=3) == _all_pairs(documents, 29, seed=3)
    assert _all_pairs(documents, 29, seed=3) != _all_pairs(documents, 29, seed=4)


def test_a_single_document_cannot_make_random_pairs():
    with pytest.raises(ValueError, match="at least two documents"):
        _all_pairs(_numbered_documents(num_documents=1, sentences=6), 29)


@settings(max_examples=40, deadline=None)
@given(
    sentence_lengths=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=12), min_size=2, max_size=6),
    max_num_tokens=st.integers(2, 40),
    nsp_probability=st.sampled_from([0.0, 0.5, 1.0]),
    short_seq_probability=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_every_pair_fits_and_keeps_document_order(
    sentence_lengths, max_num_tokens, nsp_probability, short_seq_probability, seed
):
    documents = []
    for index, lengths in enumerate(sentence_lengths):
        positions = iter(range(sum(lengths)))
        documents.append([[index * 10_000 + next(positions) for _ in range(length)] for length in lengths])
    for document, tokens_a, tokens_b, label in _all_pairs(
        documents, max_num_tokens, nsp_probability, short_seq_probability, seed
    ):
        assert tokens_a and tokens_b and len(tokens_a) + len(tokens_b) <= max_num_tokens
        assert tokens_a == sorted(tokens_a) and tokens_b == sorted(tokens_b)  # in document order
        if label == IS_NEXT:
            assert max(tokens_a) < min(tokens_b) and tokens_b[0] // 10_000 == document
        else:
            assert tokens_b[0] // 10_000 != document


def test_dataset_has_bert_inputs_and_does_not_depend_on_num_proc(tmp_path, tokenizer):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(plain_corpus())
    pairs = build_pretraining_dataset(corpus, tokenizer, max_seq_length=24, seed=1, cache_dir=str(tmp_path / "cache"))
    assert pairs.column_names == ["input_ids", "token_type_ids", "attention_mask", "next_sentence_label"]
    for example in pairs:
        ids, types = example["input_ids"], example["token_type_ids"]
        assert len(ids) <= 24 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        first_sep = ids.index(tokenizer.sep_token_id)
        assert ids.count(tokenizer.sep_token_id) == 2 and 1 < first_sep < len(ids) - 2
        assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
        assert example["attention_mask"] == [1] * len(ids)
    in_parallel = build_pretraining_dataset(
        corpus, tokenizer, max_seq_length=24, seed=1, num_proc=2, cache_dir=str(tmp_path / "cache2")
    )
    assert in_parallel["input_ids"] == pairs["input_ids"]


def test_dataset_cache_follows_file_edits(tmp_path, tokenizer):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(plain_corpus(num_documents=4, seed=1))
    first = build_pretraining_dataset(corpus, tokenizer, max_seq_length=24, cache_dir=str(tmp_path / "cache"))
    assert (
        build_pretraining_dataset(corpus, tokenizer, max_seq_length=24, cache_dir=str(tmp_path / "cache"))._fingerprint
        == first._fingerprint
    )
    corpus.write_text(plain_corpus(num_documents=5, seed=2))
    edited = build_pretraining_dataset(corpus, tokenizer, max_seq_length=24, cache_dir=str(tmp_path / "cache"))
    assert edited["input_ids"] != first["input_ids"]


def _random_examples(tokenizer, count: int, max_length: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    ordinary = [index for index in range(len(tokenizer)) if index not in tokenizer.all_special_ids]
    examples = []
    for _ in range(count):
        length = int(rng.integers(3, max_length - 2))
        ids = [tokenizer.cls_token_id, *rng.choice(ordinary, size=length).tolist(), tokenizer.sep_token_id]
        examples.append(
            {
                "input_ids": ids,
                "token_type_ids": [0] * len(ids),
                "attention_mask": [1] * len(ids),
                "next_sentence_label": int(rng.integers(0, 2)),
            }
        )
    return examples


def test_masking_rates_follow_bert(tokenizer):
    collator = PretrainingCollator(tokenizer, seed=0)
    examples = _random_examples(tokenizer, count=256, max_length=128, seed=0)
    batch = collator(examples)
    original = collator.tokenizer.pad([{"input_ids": e["input_ids"]} for e in examples], return_tensors="pt")[
        "input_ids"
    ]
    maskable = ~torch.isin(
        original, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    )
    masked = batch["labels"] != -100
    assert not (masked & ~maskable).any()  # [CLS], [SEP] and padding are never masked
    assert torch.equal(batch["labels"][masked], original[masked])
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert masked.sum() / maskable.sum() == pytest.approx(0.15, abs=0.01)
    as_mask = (batch["input_ids"][masked] == tokenizer.mask_token_id).float().mean()
    kept = (batch["input_ids"][masked] == original[masked]).float().mean()
    assert as_mask == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1 + 0.1 / len(tokenizer), abs=0.03)  # a random token may equal the original
    assert torch.equal(batch["next_sentence_label"], torch.tensor([e["next_sentence_label"] for e in examples]))


def test_seeded_masks_are_reproducible_and_unseeded_ones_follow_torch(tokenizer):
    examples = _random_examples(tokenizer, count=8, max_length=32, seed=1)
    assert torch.equal(
        PretrainingCollator(tokenizer, seed=5)(examples)["input_ids"],
        PretrainingCollator(tokenizer, seed=5)(examples)["input_ids"],
    )
    torch.manual_seed(0)
    first = PretrainingCollator(tokenizer)(examples)["labels"]
    torch.manual_seed(0)
    assert torch.equal(PretrainingCollator(tokenizer)(examples)["labels"], first)


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(1, 6), max_length=st.integers(6, 20), seed=st.integers(0, 1000), probability=st.floats(0.0, 1.0)
)
def test_masking_invariants_hold_for_any_batch(tokenizer, count, max_length, seed, probability):
    examples = _random_examples(tokenizer, count, max_length, seed)
    batch = PretrainingCollator(tokenizer, mlm_probability=probability, seed=seed)(examples)
    original = tokenizer.pad([{"input_ids": e["input_ids"]} for e in examples], return_tensors="pt")["input_ids"]
    masked = batch["labels"] != -100
    special = torch.isin(
        original, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    )
    assert not (masked & special).any()
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert torch.equal(batch["attention_mask"], (original != tokenizer.pad_token_id).long())
    if probability == 1.0:
        assert torch.equal(masked, ~special)


def test_collator_rejects_impossible_probabilities(tokenizer):
    with pytest.raises(ValueError, match="mlm_probability"):
        PretrainingCollator(tokenizer, mlm_probability=1.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        PretrainingCollator(tokenizer, mask_replace_probability=0.8, random_replace_probability=0.3)


WIKITEXT = data_sources(  # (WikiText-2 validation text or its demo prefix, the BERT vocabulary, articles in the text)
    demo=(DEMO_DATA / "wikitext-2-raw" / "wiki.demo.raw", DEMO_DATA / "vocab.txt", 10),
    full=(FULL_DATA / "wikitext-2-raw" / "wiki.valid.raw", FULL_DATA / "vocab" / "bert-base-uncased-vocab.txt", 60),
)


@pytest.mark.parametrize("source", list(WIKITEXT))
def test_wikitext_valid_becomes_articles_of_clean_sentences(tmp_path, source):
    text, vocab, articles = WIKITEXT[source]
    documents = read_documents(text, cache_dir=str(tmp_path))
    assert len(documents) == articles  # one per ` = Title = ` heading
    sentences = [sentence for document in documents["sentences"] for sentence in document]
    assert sentences[0].startswith("Homarus gammarus , known as the European lobster")
    assert not any("@-@" in sentence or sentence.startswith("=") for sentence in sentences)
    vocabulary = load_tokenizer(vocab)
    assert vocabulary.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "hello"]) == [
        0,
        100,
        101,
        102,
        103,
        1996,
        7592,
    ]
