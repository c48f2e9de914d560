"""The PyTorch model: properties over random architectures, reference formulas, conv, heads and HF machinery."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    BERT_PROGRAM,
    SPEC_PROGRAMS,
    append_padding,
    layer_stacks,
    random_batch,
    tiny_config,
)
from hypothesis import given
from hypothesis import strategies as st
from transformers import BertConfig, BertModel
from transformers.masking_utils import create_bidirectional_mask

from modeling_autobert_zero import (
    AutoBertZeroConfig,
    AutoBertZeroForMaskedLM,
    AutoBertZeroForMultipleChoice,
    AutoBertZeroForPreTraining,
    AutoBertZeroForQuestionAnswering,
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForTokenClassification,
    AutoBertZeroModel,
)
from modeling_autobert_zero.lightweight_conv import CONV_STRATEGIES, choose_conv_strategy, lightweight_conv
from modeling_autobert_zero.modeling_autobert_zero import (
    AutoBertZeroLightweightConv,
    AutoBertZeroSearchedAttention,
)


ATTENTION_IMPLEMENTATIONS = ["sdpa", "eager"]
HEAD_CLASSES = [
    AutoBertZeroModel,
    AutoBertZeroForPreTraining,
    AutoBertZeroForMaskedLM,
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForQuestionAnswering,
    AutoBertZeroForTokenClassification,
    AutoBertZeroForMultipleChoice,
]
HYBRID_LAYERS = [
    {"type": "conv", "kernel_size": 3},
    {"type": "attention", "program": SPEC_PROGRAMS["layer_2"]},
]
# Weights 10x BERT's initialisation: the projections are then O(1), so attention is far from uniform and a
# padding or fast-path mistake moves the outputs well beyond the 1e-5 tolerance.
LARGE_WEIGHTS = 0.2
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "conv_kernel_dropout": 0.0}


def build(model_class, layers, attn_implementation: str = "sdpa", seed: int = 0, **overrides):
    """A tiny model in eval mode, with weights fixed by ``seed``."""
    torch.manual_seed(seed)
    return model_class(tiny_config(layers, attn_implementation=attn_implementation, **overrides)).eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------------------
# Properties over random architectures of the search space.
# ---------------------------------------------------------------------------------------------------------


@given(layer_stacks(), st.integers(1, 3), st.integers(1, 10))
def test_output_shapes(layers, batch, seq_len):
    model = build(AutoBertZeroModel, layers)
    inputs = random_batch(model.config, batch, seq_len)
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert outputs.last_hidden_state.shape == (batch, seq_len, 16)
    assert outputs.pooler_output.shape == (batch, 16)
    assert len(outputs.hidden_states) == len(layers) + 1
    assert len(outputs.attentions) == len(layers)
    assert torch.isfinite(outputs.last_hidden_state).all()


@given(
    layer_stacks(),
    st.sampled_from(ATTENTION_IMPLEMENTATIONS),
    st.booleans(),
    st.integers(1, 8),
    st.integers(1, 5),
)
def test_padding_never_changes_outputs_at_real_tokens(layers, attn_implementation, use_interpreter, seq_len, extra):
    model = build(AutoBertZeroModel, layers, attn_implementation, initializer_range=LARGE_WEIGHTS)
    inputs = random_batch(model.config, batch=2, seq_len=seq_len)
    with torch.no_grad():
        unpadded = model(**inputs, use_interpreter=use_interpreter).last_hidden_state
        padded = model(**append_padding(inputs, extra), use_interpreter=use_interpreter).last_hidden_state
        # a ragged batch: the second row is shorter than the first
        ragged = append_padding(inputs, extra)
        ragged["input_ids"][0, seq_len:] = 7
        ragged["attention_mask"][0, seq_len:] = 1
        second_row = model(**ragged, use_interpreter=use_interpreter).last_hidden_state[1]
    assert_close(padded[:, :seq_len], unpadded)
    assert_close(second_row[:seq_len], unpadded[1])


PADDING_SENSITIVE_PROGRAMS = [
    # logsigmoid(0) and a distance to a zero row are not 0: padded key columns must be zeroed again before a
    # row-pair op reduces over them
    "matmul(softmax(euclidean(logsigmoid(matmul(Q, transpose(K))), matmul(V, transpose(K)))), V)",
    "matmul(cosine(logsigmoid(matmul(Q, transpose(K))), logsigmoid(matmul(V, transpose(K)))), V)",
    "matmul(Q, softmax(cosine(logsigmoid(transpose(K)), transpose(V))))",
    # the same inside the query of a fused-form program
    "matmul(softmax(scale(matmul(euclidean(logsigmoid(matmul(Q, transpose(K))), transpose(V)), transpose(K)))), V)",
    # a softmax over the token axis of a (d, n) value
    "matmul(Q, transpose(matmul(softmax(transpose(K)), V)))",
    # distances to padded keys are not 0 before masking
    "matmul(euclidean(Q, K), V)",
]


@pytest.mark.parametrize("use_interpreter", [False, True], ids=["fast", "interpreter"])
@pytest.mark.parametrize("program", PADDING_SENSITIVE_PROGRAMS)
def test_padding_rule_holds_where_padded_values_are_not_zero(program, use_interpreter):
    """SPEC §2: padded positions are zeroed after every op, so these programs ignore padding too."""
    model = build(AutoBertZeroModel, [{"type": "attention", "program": program}] * 2, initializer_range=0.5)
    inputs = random_batch(model.config, batch=2, seq_len=5)
    with torch.no_grad():
        unpadded = model(**inputs, use_interpreter=use_interpreter).last_hidden_state
        padded = model(**append_padding(inputs, 3), use_interpreter=use_interpreter).last_hidden_state
    assert_close(padded[:, :5], unpadded)


def test_padding_rule_holds_for_distances_between_equal_rows():
    model = build(AutoBertZeroModel, [{"type": "attention", "program": "matmul(euclidean(Q, Q), K)"}], initializer_range=0.2)
    inputs = random_batch(model.config, batch=2, seq_len=3)
    with torch.no_grad():
        unpadded = model(**inputs).last_hidden_state
        padded = model(**append_padding(inputs, 5)).last_hidden_state
    assert_close(padded[:, :3], unpadded)


@given(layer_stacks(), st.sampled_from(ATTENTION_IMPLEMENTATIONS), st.integers(1, 8), st.integers(0, 4))
def test_fast_path_equals_interpreter(layers, attn_implementation, seq_len, extra):
    model = build(AutoBertZeroModel, layers, attn_implementation, initializer_range=LARGE_WEIGHTS)
    inputs = random_batch(model.config, batch=2, seq_len=seq_len)
    if extra:
        inputs = append_padding(inputs, extra)
        inputs["attention_mask"][0] = 1  # one padded row, one full row
    with torch.no_grad():
        fast = model(**inputs)
        interpreted = model(**inputs, use_interpreter=True)
    assert_close(fast.last_hidden_state, interpreted.last_hidden_state)
    assert_close(fast.pooler_output, interpreted.pooler_output)


@given(layer_stacks())
def test_save_and_load_give_identical_outputs(tmp_path_factory, layers):
    model = build(AutoBertZeroModel, layers)
    directory = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(directory)
    reloaded = AutoBertZeroModel.from_pretrained(directory).eval()
    inputs = append_padding(random_batch(model.config, seq_len=5), 2)
    with torch.no_grad():
        expected, actual = model(**inputs), reloaded(**inputs)
    assert torch.equal(actual.last_hidden_state, expected.last_hidden_state)
    assert torch.equal(actual.pooler_output, expected.pooler_output)
    assert reloaded.config.compiled_layers == model.config.compiled_layers


# ---------------------------------------------------------------------------------------------------------
# Reference formulas (SPEC §7), computed by hand from the projection weights.
# ---------------------------------------------------------------------------------------------------------


def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.log(1 + torch.exp(x))


def softsign(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + x.abs())


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, d: int) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v


# SPEC §7's "formula per head" column, with d = head size.
REFERENCE_FORMULAS = {
    "bert": lambda Q, K, V, d: attention(Q, K, V, d),
    "layer_2": lambda Q, K, V, d: attention(Q, softplus(K), Q + K, d),
    "layer_4": lambda Q, K, V, d: attention(Q, softplus(-(F.logsigmoid(Q) + Q + K)), Q, d),
    "layer_6_and_8": lambda Q, K, V, d: attention(Q, softplus(-K), Q, d),
    "layer_10": lambda Q, K, V, d: attention(Q, K / math.sqrt(d) + softsign(softsign(K) / math.sqrt(d)) + V, V, d),
    "layer_12": lambda Q, K, V, d: attention(Q, K / math.sqrt(d) + V, V, d),
}


def reference_attention(module: AutoBertZeroSearchedAttention, hidden: torch.Tensor, formula) -> torch.Tensor:
    """The formula per head on one unpadded sequence ``hidden`` (seq, hidden), then W_O."""
    seq_len = hidden.shape[0]
    heads, head_dim = module.num_heads, module.head_dim

    def project(name: str) -> torch.Tensor | None:
        if name not in module.input_projections:
            return None
        linear = module.input_projections[name]
        return (hidden @ linear.weight.T + linear.bias).view(seq_len, heads, head_dim).transpose(0, 1)

    per_head = formula(project("Q"), project("K"), project("V"), head_dim)  # (heads, seq, head_dim)
    concatenated = per_head.transpose(0, 1).reshape(seq_len, heads * head_dim)
    return concatenated @ module.output_projection.weight.T + module.output_projection.bias


@pytest.mark.parametrize("use_interpreter", [False, True], ids=["fast", "interpreter"])
@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("name", sorted(REFERENCE_FORMULAS))
def test_spec_program_matches_its_formula(name, attn_implementation, use_interpreter):
    config = tiny_config(
        [{"type": "attention", "program": SPEC_PROGRAMS[name]}], hidden_size=24, num_attention_heads=3,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    module = AutoBertZeroSearchedAttention(config, config.compiled_layers[0], layer_idx=0).double().eval()
    assert module.fused_plan is not None
    lengths = [7, 4]
    hidden = torch.randn(2, 7, 24, dtype=torch.float64)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    token_mask = mask.bool()[:, None, :]
    fused_mask = create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)

    with torch.no_grad():
        unpadded, _ = module(hidden[:1], use_interpreter=use_interpreter)
        padded, _ = module(hidden, token_mask, fused_mask, use_interpreter=use_interpreter)
        expected = [
            reference_attention(module, hidden[row, :length], REFERENCE_FORMULAS[name])
            for row, length in enumerate(lengths)
        ]
    torch.testing.assert_close(unpadded[0], expected[0])
    for row, length in enumerate(lengths):
        torch.testing.assert_close(padded[row, :length], expected[row])


def _bert_weights_as_autobert_zero(bert_state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    renamed = {name: value for name, value in bert_state.items() if name.startswith(("embeddings.", "pooler."))}
    parts = {
        "attention.self.query": "mixer.input_projections.Q",
        "attention.self.key": "mixer.input_projections.K",
        "attention.self.value": "mixer.input_projections.V",
        "attention.output.dense": "mixer.output_projection",
        "attention.output.LayerNorm": "mixer_layer_norm",
        "intermediate.dense": "intermediate",
        "output.dense": "output",
        "output.LayerNorm": "output_layer_norm",
    }
    for layer in range(num_layers):
        for bert_part, our_part in parts.items():
            for kind in ("weight", "bias"):
                bert_name = f"encoder.layer.{layer}.{bert_part}.{kind}"
                renamed[f"encoder.layer.{layer}.{our_part}.{kind}"] = bert_state[bert_name]
    return renamed


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_bert_preset_equals_transformers_bert_with_the_same_weights(attn_implementation):
    """SPEC §7: plain BERT in this space, pinned against `transformers`' own BertModel."""
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=2, vocab_size=50,
                   max_position_embeddings=32, attn_implementation=attn_implementation)
    ).eval()
    ours = build(AutoBertZeroModel, [{"type": "attention", "program": BERT_PROGRAM}] * 2, attn_implementation)
    missing, unexpected = ours.load_state_dict(_bert_weights_as_autobert_zero(bert.state_dict(), 2), strict=False)
    assert unexpected == [] and missing == []
    inputs = append_padding(random_batch(ours.config, seq_len=6), 3)
    inputs["attention_mask"][0] = 1
    with torch.no_grad():
        expected, actual = bert(**inputs), ours(**inputs)
    assert_close(actual.last_hidden_state[0], expected.last_hidden_state[0])
    assert_close(actual.last_hidden_state[1, :6], expected.last_hidden_state[1, :6])
    assert_close(actual.pooler_output, expected.pooler_output)


# ---------------------------------------------------------------------------------------------------------
# The lightweight convolution block (SPEC §3).
# ---------------------------------------------------------------------------------------------------------


def reference_lightweight_conv(inputs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """out[b, i, c] = Σ_t kernel[head(c), t] · inputs[b, i + t − k//2, c], taps outside the sequence are 0."""
    batch, seq_len, hidden = inputs.shape
    heads, kernel_size = kernel.shape
    head_of_channel = torch.arange(hidden) // (hidden // heads)
    outputs = torch.zeros_like(inputs)
    for tap in range(kernel_size):
        offset = tap - kernel_size // 2
        for position in range(seq_len):
            source = position + offset
            if 0 <= source < seq_len:
                outputs[:, position] += kernel[head_of_channel, tap] * inputs[:, source]
    return outputs


def reference_conv_block(module: AutoBertZeroLightweightConv, hidden: torch.Tensor) -> torch.Tensor:
    """SPEC §3 on one unpadded sequence: Linear ∘ LightweightConv ∘ GLU ∘ Linear(d, 2d)."""
    projected = hidden @ module.glu_projection.weight.T + module.glu_projection.bias
    value, gate = projected.chunk(2, dim=-1)
    gated = value * torch.sigmoid(gate)
    kernel = torch.exp(module.kernel) / torch.exp(module.kernel).sum(-1, keepdim=True)
    convolved = reference_lightweight_conv(gated[None], kernel)[0]
    return convolved @ module.output_projection.weight.T + module.output_projection.bias


@pytest.mark.parametrize("kernel_size", [3, 9, 65])
def test_conv_block_matches_hand_written_lightweight_convolution(kernel_size):
    config = tiny_config([{"type": "conv", "kernel_size": kernel_size}], num_attention_heads=4)
    torch.manual_seed(0)
    module = AutoBertZeroLightweightConv(config, kernel_size, layer_idx=0).double().eval()
    torch.nn.init.normal_(module.kernel)  # far from uniform, so a wrong tap order shows
    hidden = torch.randn(2, 10, 16, dtype=torch.float64)
    lengths = [10, 6]
    token_mask = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])[:, None, :]
    with torch.no_grad():
        outputs, weights = module(hidden, token_mask)
        for row, length in enumerate(lengths):
            torch.testing.assert_close(outputs[row, :length], reference_conv_block(module, hidden[row, :length]))
    assert weights is None


def test_conv_kernel_is_shared_by_the_channels_of_each_head():
    kernel = torch.zeros(2, 3)
    kernel[0, 0] = 1.0  # head 0 copies the previous position, head 1 outputs zeros
    inputs = torch.arange(1.0, 5.0)[None, :, None].expand(1, 4, 4).contiguous()  # channels 0-1: head 0
    outputs = reference_lightweight_conv(inputs, kernel)
    assert outputs[0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0] == outputs[0, :, 1].tolist()
    assert outputs[0, :, 2:].abs().sum() == 0
    for strategy in CONV_STRATEGIES.values():
        assert_close(strategy(inputs, kernel), outputs)


@pytest.mark.parametrize("kernel_size", [3, 5, 7, 9, 15, 31, 65])
def test_conv_strategies_agree(kernel_size):
    generator = torch.Generator().manual_seed(kernel_size)
    for seq_len in (1, 2, 5, 16, 40, 70):
        inputs = torch.randn(2, seq_len, 8, generator=generator)
        kernel = torch.softmax(torch.randn(4, kernel_size, generator=generator), dim=-1)
        expected = reference_lightweight_conv(inputs, kernel)
        for name, strategy in CONV_STRATEGIES.items():
            assert_close(strategy(inputs, kernel), expected)
        assert choose_conv_strategy(kernel_size, seq_len, "cpu") in CONV_STRATEGIES
        assert_close(lightweight_conv(inputs, kernel), expected)


@pytest.mark.parametrize("kernel_size", [3, 31])
def test_conv_strategies_have_the_same_gradients(kernel_size):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 12, 8, generator=generator)
    logits = torch.randn(4, kernel_size, generator=generator)
    upstream = torch.randn(2, 12, 8, generator=generator)
    gradients = {}
    for name, strategy in CONV_STRATEGIES.items():
        inputs_leaf, logits_leaf = inputs.clone().requires_grad_(), logits.clone().requires_grad_()
        (strategy(inputs_leaf, torch.softmax(logits_leaf, -1)) * upstream).sum().backward()
        gradients[name] = (inputs_leaf.grad, logits_leaf.grad)
    for name in ("banded", "fft"):
        assert_close(gradients[name][0], gradients["grouped"][0])
        assert_close(gradients[name][1], gradients["grouped"][1])


def test_conv_strategies_keep_float64_precision():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 20, 8, generator=generator, dtype=torch.float64)
    kernel = torch.softmax(torch.randn(4, 31, generator=generator, dtype=torch.float64), dim=-1)
    expected = reference_lightweight_conv(inputs, kernel)
    for strategy in CONV_STRATEGIES.values():
        torch.testing.assert_close(strategy(inputs, kernel), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Task heads: shapes and losses as `transformers` computes them.
# ---------------------------------------------------------------------------------------------------------


def _batch(config, seq_len: int = 6):
    inputs = append_padding(random_batch(config, batch=2, seq_len=seq_len), 2)
    inputs["attention_mask"][0] = 1
    return inputs


@pytest.mark.parametrize("sparse_prediction", [False, True])
def test_pretraining_head(sparse_prediction):
    model = build(AutoBertZeroForPreTraining, HYBRID_LAYERS, sparse_prediction=sparse_prediction)
    inputs = _batch(model.config)
    labels = inputs["input_ids"].clone()
    labels[:, ::2] = -100
    next_sentence_label = torch.tensor([0, 1])
    outputs = model(**inputs, labels=labels, next_sentence_label=next_sentence_label)
    with torch.no_grad():
        unlabelled = model(**inputs)
    assert unlabelled.loss is None
    assert unlabelled.prediction_logits.shape == (2, 8, 50)
    assert outputs.seq_relationship_logits.shape == (2, 2)
    labelled = labels != -100
    if sparse_prediction:  # logits at the labelled positions only, in the order of labels[labels != -100]
        assert_close(outputs.prediction_logits, unlabelled.prediction_logits[labelled])
    else:  # what every transformers head returns
        assert_close(outputs.prediction_logits, unlabelled.prediction_logits)
    masked_lm_loss = F.cross_entropy(unlabelled.prediction_logits.reshape(-1, 50), labels.reshape(-1))
    next_sentence_loss = F.cross_entropy(outputs.seq_relationship_logits, next_sentence_label)
    assert_close(outputs.masked_lm_loss, masked_lm_loss)
    assert_close(outputs.next_sentence_loss, next_sentence_loss)
    assert_close(outputs.loss, masked_lm_loss + next_sentence_loss)

    outputs.loss.backward()
    without_gradient = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert without_gradient == []  # every parameter takes part in pretraining


@pytest.mark.parametrize("sparse_prediction", [False, True])
def test_masked_lm_head(sparse_prediction):
    model = build(AutoBertZeroForMaskedLM, HYBRID_LAYERS, sparse_prediction=sparse_prediction)
    inputs = _batch(model.config)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 1:3] = inputs["input_ids"][:, 1:3]
    outputs = model(**inputs, labels=labels)
    with torch.no_grad():
        unlabelled = model(**inputs)
    assert unlabelled.logits.shape == (2, 8, 50)
    if sparse_prediction:
        assert outputs.logits.shape == (4, 50)  # the labelled positions only
        assert_close(outputs.logits, unlabelled.logits[labels != -100])
    else:
        assert_close(outputs.logits, unlabelled.logits)
    assert_close(outputs.loss, F.cross_entropy(unlabelled.logits.reshape(-1, 50), labels.reshape(-1)))


@pytest.mark.parametrize("model_class", [AutoBertZeroForMaskedLM, AutoBertZeroForPreTraining])
def test_the_transformers_mlm_example_evaluates_our_heads(model_class, tmp_path):
    """`examples/pytorch/language-modeling/run_mlm.py`'s evaluation through `Trainer`: `preprocess_logits_for_metrics`
    takes the argmax of the logits, `compute_metrics` compares them with the labels position by position."""
    from transformers import Trainer, TrainingArguments

    def preprocess_logits_for_metrics(logits, labels):  # run_mlm.py's
        if isinstance(logits, tuple):
            logits = logits[0]
        return logits.argmax(dim=-1)

    def compute_metrics(eval_preds):  # run_mlm.py's, with the accuracy metric written out
        preds, labels = eval_preds
        labels = labels.reshape(-1)
        preds = preds.reshape(-1)
        mask = labels != -100
        return {"accuracy": float((preds[mask] == labels[mask]).mean())}

    model = build(model_class, HYBRID_LAYERS)
    inputs = _batch(model.config)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 1:4] = inputs["input_ids"][:, 1:4]
    rows = [{**{name: tensor[row] for name, tensor in inputs.items()}, "labels": labels[row]} for row in range(2)]
    if model_class is AutoBertZeroForPreTraining:  # its loss needs the NSP labels; the metric reads the MLM ones
        rows = [{**row, "next_sentence_label": torch.tensor(0)} for row in rows]
    arguments = TrainingArguments(
        tmp_path, per_device_eval_batch_size=2, report_to=[], use_cpu=True, label_names=["labels"]
    )
    trainer = Trainer(
        model=model, args=arguments, eval_dataset=rows, compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )
    metrics = trainer.evaluate()
    with torch.no_grad():
        outputs = model(**inputs)
    logits = outputs.logits if model_class is AutoBertZeroForMaskedLM else outputs.prediction_logits
    labelled = labels != -100
    expected = (logits.argmax(-1)[labelled] == labels[labelled]).float().mean().item()
    assert metrics["eval_accuracy"] == pytest.approx(expected)
    if model_class is AutoBertZeroForMaskedLM:
        loss = F.cross_entropy(logits.reshape(-1, 50), labels.reshape(-1)).item()
        assert metrics["eval_loss"] == pytest.approx(loss, abs=1e-5)


@pytest.mark.parametrize(
    "num_labels, problem_type, labels, loss_function",
    [
        (1, "regression", torch.tensor([0.5, -1.0]), lambda logits, labels: F.mse_loss(logits.squeeze(-1), labels)),
        (3, "single_label_classification", torch.tensor([2, 0]), F.cross_entropy),
        (
            3,
            "multi_label_classification",
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
            F.binary_cross_entropy_with_logits,
        ),
    ],
)
def test_sequence_classification_head(num_labels, problem_type, labels, loss_function):
    model = build(AutoBertZeroForSequenceClassification, HYBRID_LAYERS, num_labels=num_labels)
    outputs = model(**_batch(model.config), labels=labels)
    assert model.config.problem_type == problem_type  # inferred from num_labels and the labels' dtype
    assert outputs.logits.shape == (2, num_labels)
    assert_close(outputs.loss, loss_function(outputs.logits, labels))


def test_question_answering_head():
    model = build(AutoBertZeroForQuestionAnswering, HYBRID_LAYERS)
    start_positions, end_positions = torch.tensor([1, 50]), torch.tensor([3, 99])  # outside the sequence: ignored
    outputs = model(**_batch(model.config), start_positions=start_positions, end_positions=end_positions)
    assert outputs.start_logits.shape == outputs.end_logits.shape == (2, 8)
    start_loss = F.cross_entropy(outputs.start_logits[:1], start_positions[:1])
    end_loss = F.cross_entropy(outputs.end_logits[:1], end_positions[:1])
    assert_close(outputs.loss, (start_loss + end_loss) / 2)


def test_token_classification_head():
    model = build(AutoBertZeroForTokenClassification, HYBRID_LAYERS, num_labels=5)
    inputs = _batch(model.config)
    labels = torch.randint(0, 5, (2, 8))
    labels[1, 6:] = -100
    outputs = model(**inputs, labels=labels)
    assert outputs.logits.shape == (2, 8, 5)
    assert_close(outputs.loss, F.cross_entropy(outputs.logits.reshape(-1, 5), labels.reshape(-1)))


def test_multiple_choice_head():
    model = build(AutoBertZeroForMultipleChoice, HYBRID_LAYERS)
    flat = _batch(model.config)
    inputs = {name: value.view(2, 1, 8).expand(2, 3, 8).clone() for name, value in flat.items()}
    inputs["input_ids"][:, 1, 0] = 5  # the choices differ
    labels = torch.tensor([2, 0])
    outputs = model(**inputs, labels=labels)
    assert outputs.logits.shape == (2, 3)
    assert_close(outputs.loss, F.cross_entropy(outputs.logits, labels))
    with torch.no_grad():
        per_choice = model.autobert_zero(**{name: value[:, 1] for name, value in inputs.items()}).pooler_output
        assert_close(outputs.logits[:, 1], model.classifier(per_choice).squeeze(-1))


# ---------------------------------------------------------------------------------------------------------
# `transformers` machinery: tied embeddings, checkpointing, initialisation, optional outputs.
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [AutoBertZeroForMaskedLM, AutoBertZeroForPreTraining])
def test_word_embeddings_are_tied_to_the_decoder_also_after_save_and_load(model_class, tmp_path):
    model = build(model_class, HYBRID_LAYERS)
    predictions = model.cls.predictions
    assert predictions.decoder.weight is model.autobert_zero.embeddings.word_embeddings.weight
    assert predictions.decoder.bias is predictions.bias

    model.save_pretrained(tmp_path)
    reloaded = model_class.from_pretrained(tmp_path).eval()
    assert reloaded.cls.predictions.decoder.weight is reloaded.autobert_zero.embeddings.word_embeddings.weight
    assert reloaded.cls.predictions.decoder.bias is reloaded.cls.predictions.bias
    inputs = _batch(model.config)
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs)[0], model(**inputs)[0])

    reloaded.resize_token_embeddings(60)
    assert reloaded.cls.predictions.decoder.weight is reloaded.autobert_zero.embeddings.word_embeddings.weight
    assert reloaded.cls.predictions.decoder.weight.shape == (60, 16)
    assert reloaded.cls.predictions.bias.shape == (60,)


def test_untied_decoder_when_asked():
    model = build(AutoBertZeroForMaskedLM, HYBRID_LAYERS, tie_word_embeddings=False)
    assert model.cls.predictions.decoder.weight is not model.autobert_zero.embeddings.word_embeddings.weight


def _gradients(model, inputs, labels) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**inputs, labels=labels).loss.backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_gradients():
    layers = [*HYBRID_LAYERS, {"type": "attention", "program": "matmul(softmax(cosine(Q, K)), V)"}]
    model = build(AutoBertZeroForMaskedLM, layers, **NO_DROPOUT).train()
    inputs = _batch(model.config)
    labels = inputs["input_ids"].clone()
    expected = _gradients(model, inputs, labels)

    mixer_calls = []
    for layer in model.autobert_zero.encoder.layer:
        layer.mixer.register_forward_hook(lambda *args: mixer_calls.append(1))
    model.activation_checkpointing_enable()
    actual = _gradients(model, inputs, labels)

    assert len(mixer_calls) == 2 * len(layers)  # every layer ran again in the backward pass
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("model_class", HEAD_CLASSES)
def test_initialisation_is_seeded_and_covers_every_parameter(model_class):
    std = 0.05  # not the default, so parameters left at a PyTorch default initialisation show
    layers = [{"type": "conv", "kernel_size": 65}, {"type": "attention", "program": SPEC_PROGRAMS["layer_10"]}]
    first = build(model_class, layers, seed=3, initializer_range=std)
    second = build(model_class, layers, seed=3, initializer_range=std)
    normal_draws = []
    for (name, parameter), (_, again) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(parameter, again), name
        assert torch.isfinite(parameter).all(), name
        if name.endswith("bias"):
            assert parameter.abs().max() == 0, name
        elif "LayerNorm" in name or "layer_norm" in name:
            assert (parameter == 1).all(), name
        else:  # weights, embeddings and conv kernels: normal(0, initializer_range)
            if name.endswith("word_embeddings.weight"):
                assert parameter[first.config.pad_token_id].abs().max() == 0
                parameter = parameter[1:]
            assert 0 < parameter.std() and parameter.abs().max() < 6 * std, name
            if parameter.numel() >= 100:
                assert 0.7 * std < parameter.std() < 1.3 * std, (name, parameter.std().item())
            normal_draws.append(parameter.detach().flatten())
    all_draws = torch.cat(normal_draws)
    assert abs(all_draws.std().item() - std) < 0.03 * std
    assert abs(all_draws.mean().item()) < 0.03 * std


def test_new_head_on_a_saved_backbone_is_initialised(tmp_path):
    backbone = build(AutoBertZeroModel, HYBRID_LAYERS, seed=1)
    backbone.save_pretrained(tmp_path)
    classifier = AutoBertZeroForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    for name, parameter in backbone.state_dict().items():
        assert torch.equal(classifier.autobert_zero.state_dict()[name], parameter), name
    assert 0.01 < classifier.classifier.weight.std().item() < 0.03
    assert classifier.classifier.bias.abs().max() == 0


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_attention_weights_per_layer(attn_implementation):
    layers = [
        {"type": "conv", "kernel_size": 5},
        {"type": "attention", "program": BERT_PROGRAM},  # fused form
        {"type": "attention", "program": "matmul(softmax(cosine(Q, K)), V)"},  # interpreter only
    ]
    model = build(AutoBertZeroModel, layers, attn_implementation)
    inputs = _batch(model.config)
    with torch.no_grad():
        outputs = model(**inputs, output_attentions=True)
        without = model(**inputs)
    for weights in outputs.attentions:
        assert weights.shape == (2, 2, 8, 8)
        assert_close(weights[0].sum(-1)[:, 2:-2], torch.ones(2, 4))  # the kernel is normalised, away from the ends
        assert weights[1, :, :, 6:].abs().max() == 0  # padded keys get weight 0
    for weights in outputs.attentions[1:]:
        assert_close(weights[0].sum(-1), torch.ones(2, 8))
        assert_close(weights[1, :, :6].sum(-1), torch.ones(2, 6))
    assert_close(outputs.last_hidden_state, without.last_hidden_state)


MIXING_LAYERS = [
    {"type": "conv", "kernel_size": 3},
    {"type": "conv", "kernel_size": 65},  # wider than the sequence
    {"type": "attention", "program": BERT_PROGRAM},
    {"type": "attention", "program": "matmul(cosine(Q, K), V)"},
    {"type": "attention", "program": "matmul(softmax(euclidean(neg(Q), K)), V)"},
    {"type": "attention", "program": "add(matmul(softmax(scale(matmul(Q, transpose(K)))), V), softsign(Q))"},
]


def _mixer_inputs_and_outputs(model, inputs):
    """Each layer's mixer input and output, recorded by hooks on a forward pass with attentions."""
    recorded = []
    hooks = [
        layer.mixer.register_forward_hook(lambda module, args, output: recorded.append((args[0], output[0])))
        for layer in model.encoder.layer
    ]
    with torch.no_grad():
        outputs = model(**inputs, output_attentions=True)
    for hook in hooks:
        hook.remove()
    return recorded, outputs.attentions


@pytest.mark.parametrize("padded", [False, True])
def test_returned_mixing_matrices_reproduce_each_layer(padded):
    """A convolution's matrix applied to its GLU output, and an attention's to the value it multiplies, give the
    layer's output exactly, padding included; every layer type stacks; a program whose output is no such
    product returns NaN rather than a matrix that would look like one."""
    model = build(AutoBertZeroModel, MIXING_LAYERS)
    inputs = _batch(model.config) if padded else random_batch(model.config, batch=2, seq_len=8)
    recorded, attentions = _mixer_inputs_and_outputs(model, inputs)
    assert torch.stack(attentions).shape == (len(MIXING_LAYERS), 2, 2, 8, 8)
    heads, head_dim = model.config.num_attention_heads, model.config.hidden_size // model.config.num_attention_heads
    for layer, (hidden, output), matrix in zip(model.encoder.layer, recorded, attentions):
        mixer = layer.mixer
        if isinstance(mixer, AutoBertZeroLightweightConv):
            mixed = torch.nn.functional.glu(mixer.glu_projection(hidden), dim=-1)  # not zeroed at padding
        elif mixer.program.instructions[-1].op == "add":
            assert torch.isnan(matrix).all()
            continue
        else:
            mixed = mixer.input_projections["V"](hidden)
        per_head = mixed.view(2, 8, heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
        reproduced = (matrix @ per_head).transpose(1, 2).reshape(2, 8, -1)
        assert_close(mixer.output_projection(reproduced), output)


def test_conv_heads_other_than_attention_heads_give_matrices_per_conv_head():
    model = build(AutoBertZeroModel, MIXING_LAYERS[:1], conv_num_heads=4)
    recorded, (matrix,) = _mixer_inputs_and_outputs(model, _batch(model.config))
    assert matrix.shape == (2, 4, 8, 8)


def test_hidden_states_are_embeddings_then_every_layer():
    model = build(AutoBertZeroModel, HYBRID_LAYERS)
    inputs = _batch(model.config)
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
        embeddings = model.embeddings(inputs["input_ids"], inputs["token_type_ids"])
    assert len(outputs.hidden_states) == len(HYBRID_LAYERS) + 1
    assert torch.equal(outputs.hidden_states[0], embeddings)
    assert torch.equal(outputs.hidden_states[-1], outputs.last_hidden_state)


@pytest.mark.parametrize(
    "model_class, label_arguments",
    [
        (AutoBertZeroModel, {}),
        (
            AutoBertZeroForPreTraining,
            {"labels": torch.ones(2, 8, dtype=torch.long), "next_sentence_label": torch.tensor([0, 1])},
        ),
        (AutoBertZeroForMaskedLM, {"labels": torch.ones(2, 8, dtype=torch.long)}),
        (AutoBertZeroForSequenceClassification, {"labels": torch.tensor([0, 1])}),
        (
            AutoBertZeroForQuestionAnswering,
            {"start_positions": torch.tensor([0, 1]), "end_positions": torch.tensor([2, 3])},
        ),
        (AutoBertZeroForTokenClassification, {"labels": torch.ones(2, 8, dtype=torch.long)}),
    ],
)
def test_return_dict_false_returns_the_same_values_as_a_tuple(model_class, label_arguments):
    model = build(model_class, HYBRID_LAYERS)
    inputs = _batch(model.config)
    with torch.no_grad():
        as_dict = model(**inputs, **label_arguments, output_hidden_states=True)
        as_tuple = model(**inputs, **label_arguments, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    expected = as_dict.to_tuple()
    assert len(as_tuple) == len(expected)
    for actual_value, expected_value in zip(as_tuple, expected):
        if isinstance(expected_value, tuple):
            assert all(torch.equal(a, b) for a, b in zip(actual_value, expected_value))
        else:
            assert torch.equal(actual_value, expected_value)
    if label_arguments:
        assert as_tuple[0].dim() == 0  # the loss comes first


def test_inputs_embeds_give_the_same_outputs_as_input_ids():
    model = build(AutoBertZeroModel, HYBRID_LAYERS)
    inputs = _batch(model.config)
    input_ids = inputs.pop("input_ids")
    with torch.no_grad():
        from_ids = model(input_ids=input_ids, **inputs).last_hidden_state
        from_embeds = model(inputs_embeds=model.embeddings.word_embeddings(input_ids), **inputs).last_hidden_state
    assert torch.equal(from_ids, from_embeds)


def test_bad_model_inputs_are_value_errors():
    model = build(AutoBertZeroModel, HYBRID_LAYERS)
    inputs = random_batch(model.config, seq_len=4)
    with pytest.raises(ValueError, match="attention_mask"):
        model(inputs["input_ids"], attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(inputs["input_ids"], inputs_embeds=torch.zeros(2, 4, 16))


def test_paper_sized_autobert_zero_small_runs():
    """The real preset (12 layers, 256 hidden, the k=65 conv) on a short batch with padding."""
    torch.manual_seed(0)
    model = AutoBertZeroModel(AutoBertZeroConfig.from_preset("autobert-zero", "small", vocab_size=100)).eval()
    inputs = random_batch(model.config, batch=2, seq_len=12)
    with torch.no_grad():
        full = model(**inputs).last_hidden_state
        padded = model(**append_padding(inputs, 4)).last_hidden_state
    assert full.shape == (2, 12, 256)
    assert_close(padded[:, :12], full)
