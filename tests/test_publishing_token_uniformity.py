"""Token-uniformity metrics (paper Figure 5) on hand-made token matrices, padding left out, and a run on checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from modeling_autobert_zero import AutoBertZeroConfig, AutoBertZeroModel
from publishing.arguments import TokenUniformityArguments
from publishing.token_uniformity import (
    DEMO_SENTENCES,
    UniformityAccumulator,
    mean_pairwise_cosine,
    read_sentences,
    relative_residual_norm,
    run_token_uniformity,
)
from training.tokenization import load_tokenizer


VOCAB = Path(__file__).resolve().parent / "fixtures" / "training" / "vocab.txt"


def test_identical_tokens_are_perfectly_uniform():
    tokens = torch.tensor([[1.0, -2.0, 3.0]]).repeat(5, 1)
    assert relative_residual_norm(tokens) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_cosine(tokens) == pytest.approx(1.0)


def test_orthogonal_tokens_by_hand():
    tokens = torch.eye(4)  # 4 one-hot tokens: every pair orthogonal
    assert mean_pairwise_cosine(tokens) == pytest.approx(0.0, abs=1e-12)
    # mean row = 1/4 everywhere; residual entries 3/4 (4 of them) and -1/4 (12): ‖R‖² = 4·9/16 + 12/16 = 3
    assert relative_residual_norm(tokens) == pytest.approx(math.sqrt(3) / 2)


def test_opposite_and_mixed_pairs_by_hand():
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-1.0)
    # pairs: (a, b) cos 1, (a, c) cos 0, (b, c) cos 0 → mean 1/3
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])) == pytest.approx(1 / 3)
    # rows (1, 0) and (-1, 0): the mean is 0, so the residual is the whole matrix
    assert relative_residual_norm(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        mean_pairwise_cosine(torch.ones(1, 3))


@given(
    st.integers(2, 6), st.integers(1, 5), st.floats(0.1, 50.0), st.integers(0, 2**16),
)
def test_both_metrics_ignore_scale_and_token_order(count, width, scale, seed):
    tokens = torch.randn(count, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    permuted = tokens[torch.randperm(count, generator=torch.Generator().manual_seed(seed + 1))]
    for metric in (relative_residual_norm, mean_pairwise_cosine):
        assert metric(scale * tokens) == pytest.approx(metric(tokens), rel=1e-9, abs=1e-12)
        assert metric(permuted) == pytest.approx(metric(tokens), rel=1e-9, abs=1e-12)
    assert 0.0 <= relative_residual_norm(tokens) <= 1.0 + 1e-12
    assert -1.0 - 1e-12 <= mean_pairwise_cosine(tokens) <= 1.0 + 1e-12


def test_padding_is_left_out_and_every_sentence_counts_once():
    short = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    long = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    padded_short = torch.cat([short, torch.full((1, 2), 100.0)])  # the padded position must not count
    layer = torch.stack([padded_short, long])  # (batch 2, seq 3, hidden 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    accumulator = UniformityAccumulator()
    accumulator.add([layer, 2 * layer], mask)
    accumulator.add([long[None, :1], long[None, :1]], torch.ones(1, 1))  # one token: nothing to compare, skipped
    result = accumulator.result()
    assert result["num_sentences"] == 2 and [entry["layer"] for entry in result["layers"]] == [0, 1]
    expected_cosine = (mean_pairwise_cosine(short) + mean_pairwise_cosine(long)) / 2  # (0 + 1) / 2
    expected_residual = (relative_residual_norm(short) + relative_residual_norm(long)) / 2
    for entry in result["layers"]:
        assert entry["mean_pairwise_cosine"] == pytest.approx(expected_cosine) == pytest.approx(0.5)
        assert entry["relative_residual_norm"] == pytest.approx(expected_residual)


def test_sentences_come_from_a_glue_file_and_checkpoints_are_compared(tmp_path):
    sentences = read_sentences(DEMO_SENTENCES, max_sentences=12)
    assert len(sentences) == 12 and all(isinstance(sentence, str) and sentence for sentence in sentences)
    with pytest.raises(ValueError, match="cannot tell the GLUE task"):
        read_sentences(tmp_path / "sentences.tsv")

    tokenizer = load_tokenizer(VOCAB)
    checkpoints = []
    for name, layers in (
        ("hybrid", [{"type": "conv", "kernel_size": 3}, {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"}]),
        ("attention", [{"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"}] * 3),
    ):
        torch.manual_seed(0)
        config = AutoBertZeroConfig(layers=layers, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=len(tokenizer))
        AutoBertZeroModel(config).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        checkpoints.append(str(tmp_path / name))
    summary = run_token_uniformity(TokenUniformityArguments(
        checkpoints=checkpoints, sentences_file=str(DEMO_SENTENCES), max_sentences=12, max_seq_length=24, batch_size=5,
        output_dir=str(tmp_path / "out"),
    ))
    assert json.loads((tmp_path / "out" / "token_uniformity.json").read_text()) == summary
    assert (tmp_path / "out" / "token_uniformity.png").stat().st_size > 5000
    assert [len(summary["checkpoints"][name]["layers"]) for name in ("hybrid", "attention")] == [3, 4]
    assert all(summary["checkpoints"][name]["num_sentences"] == 12 for name in ("hybrid", "attention"))
    with pytest.raises(ValueError, match="distinct labels"):
        run_token_uniformity(TokenUniformityArguments(checkpoints=checkpoints, labels=["one"], output_dir=str(tmp_path)))
