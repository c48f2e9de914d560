"""PyTorch AutoBERT-Zero: BERT's embeddings and post-LN layers with a searched mixer per layer (SPEC §1–§3).

Top to bottom: embeddings → the program interpreter and searched attention → lightweight conv block →
layer → encoder → pretrained-model base → `AutoBertZeroModel` → task heads. Everything a module needs to
know comes from `AutoBertZeroConfig`, so a checkpoint is rebuilt from `config.json` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils import ModelOutput
from transformers.utils.import_utils import is_tracing

from .attention_programs import (
    FEATURE_AXIS,
    INPUT_NAMES,
    OPS,
    TOKEN_AXIS,
    FusedAttentionPlan,
    Program,
    compact_program,
    fused_attention_plan,
    infer_shapes,
)
from .configuration_autobert_zero import AutoBertZeroConfig
from .lightweight_conv import band_matrix, lightweight_conv


class AutoBertZeroEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: exactly BERT's."""

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_ids = nn.Buffer(torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_length = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, :seq_length]
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


ROWS, COLS = -2, -1  # the token-bearing axes of a per-head value (batch, heads, rows, cols)


@dataclass(frozen=True)
class ExecutionPlan:
    """Which instructions to run, where padding must be masked, and after each one which values to free.

    Padding (SPEC §2) can only reach a real token through a reduction over the token axis: a matmul summing
    over it, a cosine or euclidean whose rows are token-wide, a softmax over it. The plan masks the operands
    there, along that axis (a softmax gets -inf, a sum zeros: of one operand, the cheaper one, unless an
    operand's padded entries are already known to be zero), and the output's padded rows; values whose padded
    entries never reach a reduction are left as they are, which is what hand-written attention code does.
    A value's padded rows (columns) are known to be zero when its op keeps zeros (neg, scale, softsign, a
    transpose, an add of two such values, the matching side of a matmul or cosine) or when it is a softmax
    over tokens (its padded columns get weight 0).

    Freeing values at their last use keeps the interpreter's peak memory at what the program needs live,
    rather than every intermediate of the layer (which matters in inference; in training autograd keeps
    what backward needs anyway).
    """

    steps: tuple[int, ...]
    release_after: dict
    # per step: (operand position, axis) pairs to mask with zeros before the op
    mask_operands: dict
    # the steps that are a softmax over the token axis (their input is masked with -inf)
    token_softmax: frozenset
    # the roots whose padded rows must be zeroed after they are computed (the output's, for the next layer)
    mask_rows_after: frozenset

    @classmethod
    def build(
        cls, program: Program, shapes: list[tuple[str, str]], roots: list, keep: set, zero_rows: tuple = ()
    ) -> "ExecutionPlan":
        """Run the instructions ``roots`` depend on, keeping the values in ``keep`` to the end; the roots in
        ``zero_rows`` get their padded rows zeroed."""
        steps = tuple(_ancestors(program, roots))
        last_use: dict = {}
        for index in steps:
            for arg in program.instructions[index].args:
                last_use[arg] = index
        release_after: dict = {}
        for value, index in last_use.items():
            if value not in keep:
                release_after.setdefault(index, []).append(value)

        known_zero = {name: (False, False) for name in INPUT_NAMES}  # padded (rows, cols) known to be zero
        mask_operands: dict = {}
        token_softmax = set()
        for index in steps:
            op, args = program.instructions[index]
            arg_shapes = [(TOKEN_AXIS, FEATURE_AXIS) if isinstance(arg, str) else shapes[arg] for arg in args]
            flags = [known_zero[arg] for arg in args]
            masks: list = []
            if op in ("neg", "scale", "softsign"):
                zero = flags[0]
            elif op == "transpose":
                zero = flags[0][::-1]
            elif op == "add":
                zero = (flags[0][0] and flags[1][0], flags[0][1] and flags[1][1])
            elif op == "softmax":
                token_wide = arg_shapes[0][1] == TOKEN_AXIS
                if token_wide:
                    token_softmax.add(index)
                zero = (False, token_wide)
            elif op == "matmul":
                (rows, inner), (_, cols) = arg_shapes
                if inner == TOKEN_AXIS and not (flags[0][1] or flags[1][0]):
                    # zero one operand along the summed axis: the one whose other axis is the feature axis
                    masks.append((0, COLS) if rows == FEATURE_AXIS and cols == TOKEN_AXIS else (1, ROWS))
                zero = (flags[0][0], flags[1][1])
            elif op in ("cosine", "euclidean"):
                if arg_shapes[0][1] == TOKEN_AXIS:  # rows as wide as the sequence: norms and distances sum over it
                    masks.extend((position, COLS) for position in range(2) if not flags[position][1])
                zero = (flags[0][0], flags[1][0]) if op == "cosine" else (False, False)
            else:  # logsigmoid maps 0 to log(1/2)
                zero = (False, False)
            if masks:
                mask_operands[index] = tuple(masks)
            known_zero[index] = zero
        mask_rows_after = frozenset(
            root for root in zero_rows if shapes[root][0] == TOKEN_AXIS and not known_zero[root][0]
        )
        return cls(
            steps,
            {index: tuple(values) for index, values in release_after.items()},
            mask_operands,
            frozenset(token_softmax),
            mask_rows_after,
        )


def _masked(value: torch.Tensor, token_mask: torch.Tensor, axis: int) -> torch.Tensor:
    """``value`` with its padded rows (``axis`` -2) or columns (-1) set to zero."""
    return value.masked_fill(~(token_mask[..., :, None] if axis == ROWS else token_mask[..., None, :]), 0.0)


def run_program(
    program: Program,
    plan: ExecutionPlan,
    values: dict,
    token_mask: torch.Tensor | None,
    head_dim: int,
    weights_dropout: Callable[[torch.Tensor], torch.Tensor],
) -> dict:
    """Interpret ``program`` over per-head tensors ``(batch, heads, rows, cols)`` with SPEC §2's padding rule.

    ``values`` maps the input names (projected, padded rows not zeroed) to tensors; the instructions of
    ``plan`` are added to it under their indices, and dead ones removed, in place. ``token_mask`` is
    ``(batch, 1, seq)`` bool (True = real token) or ``None`` when nothing is padded, in which case no
    masking work is done. Padding is masked where ``plan`` says (see `ExecutionPlan`), so it can never reach a
    real token; a softmax over the token axis gives padded positions weight 0 and is followed by
    ``weights_dropout`` (BERT's attention-probability dropout).
    """
    for index in plan.steps:
        op, args = program.instructions[index]
        operands = [values[arg] for arg in args]
        if token_mask is not None:
            for position, axis in plan.mask_operands.get(index, ()):
                operands[position] = _masked(operands[position], token_mask, axis)
        if index in plan.token_softmax:
            scores = operands[0]
            if token_mask is not None:
                scores = scores.masked_fill(~token_mask[..., None, :], torch.finfo(scores.dtype).min)
            result = weights_dropout(torch.softmax(scores, dim=-1))
        else:
            result = OPS[op].function(*operands, head_dim)
        del operands
        if token_mask is not None and index in plan.mask_rows_after:
            result = _masked(result, token_mask, ROWS)
        values[index] = result
        for dead in plan.release_after.get(index, ()):
            del values[dead]
    return values


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference `softmax(scaling · q kᵀ + mask) · v`, as `transformers`' eager attention computes it."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = nn.functional.dropout(torch.softmax(scores, dim=-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def token_mixing_factor(program: Program, shapes: list[tuple[str, str]]) -> int | None:
    """The instruction whose value ``M`` gives the program's output as ``M · X``: the first argument of an output
    ``matmul`` when it has shape (n, n); ``None`` when the output is not such a product."""
    output = program.instructions[-1]
    if output.op != "matmul" or isinstance(output.args[0], str):
        return None
    factor = output.args[0]
    return factor if shapes[factor] == (TOKEN_AXIS, TOKEN_AXIS) else None


def _ancestors(program: Program, roots: list) -> list[int]:
    """Instruction indices the roots depend on (roots included), ascending."""
    needed: set[int] = set()
    stack = [root for root in roots if not isinstance(root, str)]
    while stack:
        index = stack.pop()
        if index not in needed:
            needed.add(index)
            stack.extend(arg for arg in program.instructions[index].args if not isinstance(arg, str))
    return sorted(needed)


class AutoBertZeroSearchedAttention(nn.Module):
    """Multi-head attention whose per-head computation is a searched program (SPEC §2), then `W_O`.

    Only the projections the program reads are created. Programs of the form
    `matmul(softmax(scale(matmul(q, transpose(k)))), v)` compute q, k, v with the interpreter and hand them to
    the attention kernel that `config._attn_implementation` selects (eager, sdpa, flash, ...), so they never
    materialise the n×n scores under fused kernels; every other program runs through `run_program`.

    With `output_attentions`, the layer returns its token-mixing matrix `M` (batch, heads, seq, seq): when the
    program's output is `matmul(M, X)` with `M` an (n, n) value (the softmax weights of every fused-form
    program, `cosine(Q, K)` in `matmul(cosine(Q, K), V)`, ...), the head's output is exactly `M · X`. A program
    whose output is not such a product (`add(matmul(M, V), Q)`, or mixing through an (n, d)ᵀ·(n, d) contraction)
    has no matrix that gives its output, and returns NaN there rather than a matrix that would look like one.
    """

    def __init__(self, config: AutoBertZeroConfig, program: Program, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = False
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.program = program = compact_program(program)  # no dead or repeated work
        self.shapes = infer_shapes(program)
        self.input_projections = nn.ModuleDict(
            {name: nn.Linear(config.hidden_size, config.hidden_size) for name in program.inputs_read()}
        )
        self.output_projection = nn.Linear(config.hidden_size, config.hidden_size)
        self.weights_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.fused_plan: FusedAttentionPlan | None = fused_attention_plan(program)
        output = len(program) - 1
        self._mixing_index = token_mixing_factor(program, self.shapes)
        self._interpreter_plan = ExecutionPlan.build(program, self.shapes, [output], {output}, zero_rows=(output,))
        kept = {output} if self._mixing_index is None else {output, self._mixing_index}
        self._interpreter_plan_with_weights = ExecutionPlan.build(program, self.shapes, [output], kept, zero_rows=(output,))
        if self.fused_plan is not None:
            fused = self.fused_plan
            fused_inputs = [fused.query, fused.key, fused.value]
            # the fused kernel masks padded keys and the context's padded rows itself
            self._fused_inputs_plan = ExecutionPlan.build(program, self.shapes, fused_inputs, set(fused_inputs))
            self._fused_scaling = self.head_dim ** (-fused.scale_count / 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        use_interpreter: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq_len, hidden = hidden_states.shape
        values: dict = {}
        # Inputs keep their padded rows: every op's result is masked (and softmax and the fused kernels mask
        # keys), so padded rows cannot reach a real token and masking the inputs too would be wasted work.
        for name, projection in self.input_projections.items():
            values[name] = projection(hidden_states).view(batch, seq_len, self.num_heads, self.head_dim).transpose(1, 2)

        if self.fused_plan is not None and not output_attentions and not use_interpreter:
            fused = self.fused_plan
            dropout = self.weights_dropout.p if self.training else 0.0
            run_program(self.program, self._fused_inputs_plan, values, token_mask, self.head_dim, self.weights_dropout)
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            query, key, value = (values[operand] for operand in (fused.query, fused.key, fused.value))
            del values
            context, _ = attention_interface(
                self, query, key, value, attention_mask, dropout=dropout, scaling=self._fused_scaling
            )  # (batch, seq, heads, head_dim)
            del query, key, value
            weights = None
            if token_mask is not None:
                context = context.masked_fill(~token_mask[:, 0, :, None, None], 0.0)
        else:
            plan = self._interpreter_plan_with_weights if output_attentions else self._interpreter_plan
            run_program(self.program, plan, values, token_mask, self.head_dim, self.weights_dropout)
            context = values[len(self.program) - 1].transpose(1, 2)  # (batch, seq, heads, head_dim)
            weights = None
            if output_attentions and self._mixing_index is None:
                weights = context.new_full((batch, self.num_heads, seq_len, seq_len), float("nan"))
            elif output_attentions:
                weights = values[self._mixing_index]  # (batch, heads, seq, seq)
                if token_mask is not None:  # padding as the output sees it: padded rows and keys out
                    weights = _masked(_masked(weights, token_mask, ROWS), token_mask, COLS)
            del values
        return self.output_projection(context.reshape(batch, seq_len, hidden)), weights


class AutoBertZeroLightweightConv(nn.Module):
    """SPEC §3: `Linear(d, d) ∘ LightweightConv ∘ GLU ∘ Linear(d, 2d)`, padded positions zeroed before the conv."""

    def __init__(self, config: AutoBertZeroConfig, kernel_size: int, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.kernel_size = kernel_size
        self.glu_projection = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.kernel = nn.Parameter(torch.empty(config.conv_num_heads, kernel_size))
        self.kernel_dropout = config.conv_kernel_dropout
        self.output_projection = nn.Linear(config.hidden_size, config.hidden_size)

    def normalized_kernel(self) -> torch.Tensor:
        """Softmax over the taps, then DropConnect while training (Wu et al., 2019)."""
        kernel = torch.softmax(self.kernel, dim=-1)
        return nn.functional.dropout(kernel, p=self.kernel_dropout, training=self.training)

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        use_interpreter: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        gated = nn.functional.glu(self.glu_projection(hidden_states), dim=-1)  # (batch, seq, hidden)
        if token_mask is not None:
            gated = gated.masked_fill(~token_mask[:, 0, :, None], 0.0)
        kernel = self.normalized_kernel()
        # The fastest strategy depends on the sequence length; a traced graph (dynamic length) takes the one
        # that every exporter and runtime supports, a plain depthwise convolution.
        strategy = "grouped" if is_tracing(gated) else None
        mixed = self.output_projection(lightweight_conv(gated, kernel, strategy))
        return mixed, self.mixing_matrix(kernel, token_mask, *gated.shape[:2]) if output_attentions else None

    @staticmethod
    def mixing_matrix(kernel: torch.Tensor, token_mask: torch.Tensor | None, batch: int, seq_len: int) -> torch.Tensor:
        """The convolution as attention weights `(batch, heads, seq, seq)`: a lightweight convolution is a fixed
        banded attention, `M[b, h, i, j] = kernel[h, j - i + k // 2]` (the normalised kernel, 0 off the band),
        with the columns of padded positions zeroed as the convolution's input is. Applied to the GLU output of
        the head's channels it gives the convolution's output exactly."""
        band = band_matrix(kernel, seq_len)[None]  # (1, heads, seq, seq)
        if token_mask is None:
            return band.expand(batch, *band.shape[1:])
        return band * token_mask[:, :, None, :].to(band.dtype)  # (batch, heads, seq, seq)


class AutoBertZeroLayer(GradientCheckpointingLayer):
    """`h = LN(x + Dropout(Mixer(x)))`, `y = LN(h + Dropout(FFN(h)))` — BERT's post-LN layer, any mixer."""

    def __init__(self, config: AutoBertZeroConfig, layer_idx: int):
        super().__init__()
        compiled = config.compiled_layers[layer_idx]
        if isinstance(compiled, int):  # a kernel size (programs may come from another copy of this package's code)
            self.mixer = AutoBertZeroLightweightConv(config, compiled, layer_idx)
        else:
            self.mixer = AutoBertZeroSearchedAttention(config, compiled, layer_idx)
        self.mixer_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.mixer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        use_interpreter: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, weights = self.mixer(hidden_states, token_mask, attention_mask, output_attentions, use_interpreter)
        hidden_states = self.mixer_layer_norm(hidden_states + self.mixer_dropout(mixed))
        del mixed  # not needed by the feed-forward, where the layer's memory peaks
        feed_forward = self.output(self.activation(self.intermediate(hidden_states)))
        return self.output_layer_norm(hidden_states + self.output_dropout(feed_forward)), weights


class AutoBertZeroEncoder(nn.Module):
    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([AutoBertZeroLayer(config, index) for index in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        use_interpreter: bool = False,
    ) -> BaseModelOutput:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layer:
            hidden_states, weights = layer(hidden_states, token_mask, attention_mask, output_attentions, use_interpreter)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class AutoBertZeroPooler(nn.Module):
    """BERT's pooler: tanh(Linear(first token)), the input of NSP and sequence classification."""

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class AutoBertZeroPredictionHeadTransform(nn.Module):
    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class AutoBertZeroLMPredictionHead(nn.Module):
    """MLM head; its decoder weight is tied to the word embeddings."""

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.transform = AutoBertZeroPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class AutoBertZeroPreTrainingHeads(nn.Module):
    """MLM and NSP heads under BERT's parameter names (`cls.predictions.*`, `cls.seq_relationship.*`)."""

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.predictions = AutoBertZeroLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class AutoBertZeroPreTrainedModel(PreTrainedModel):
    config_class = AutoBertZeroConfig
    config: AutoBertZeroConfig
    base_model_prefix = "autobert_zero"
    supports_gradient_checkpointing = True
    _no_split_modules = ["AutoBertZeroEmbeddings", "AutoBertZeroLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # The heads take **kwargs (forwarded to the backbone) but compute a plain mean loss; without this,
    # Trainer would assume the loss is already normalised by num_items_in_batch and skip its own scaling.
    accepts_loss_kwargs = False
    # Putting a head on a backbone trained with another (a pretraining checkpoint under a classifier) leaves the
    # other head's weights, and the pooler where the new head has none, unused: expected, so not reported.
    # A backbone weight missing or unexpected still is. Each task head adds its own new weights as expected-missing.
    _keys_to_ignore_on_load_unexpected = [r"^cls\.", r"^classifier\.", r"^qa_outputs\.", r"(^|\.)pooler\."]

    def __init__(self, config: AutoBertZeroConfig, *inputs, **kwargs):
        config.check_sizes()  # fields may have been changed one at a time since the config was built
        super().__init__(config, *inputs, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation for Linear/Embedding/LayerNorm, plus the modules BERT does not have.

        Conv kernels start as small normal logits, so the softmax-normalised kernel starts close to uniform.
        """
        super()._init_weights(module)
        if isinstance(module, AutoBertZeroLightweightConv):
            init.normal_(module.kernel, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, AutoBertZeroLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, AutoBertZeroEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class AutoBertZeroModel(AutoBertZeroPreTrainedModel):
    """The backbone: embeddings, the searched layer stack, and (optionally) BERT's pooler."""

    # loaded from a checkpoint without a pooler (masked LM, token classification), the pooler is new, as a head is
    _keys_to_ignore_on_load_missing = [r"(^|\.)pooler\."]

    def __init__(self, config: AutoBertZeroConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = AutoBertZeroEmbeddings(config)
        self.encoder = AutoBertZeroEncoder(config)
        self.pooler = AutoBertZeroPooler(config) if add_pooling_layer else None
        self._uses_fused_attention = any(
            isinstance(layer.mixer, AutoBertZeroSearchedAttention) and layer.mixer.fused_plan is not None
            for layer in self.encoder.layer
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_interpreter: bool = False,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for real tokens, 0 for padding. Padding never changes the outputs at real tokens (SPEC §2).
        output_attentions (`bool`, *optional*):
            Also return each layer's token-mixing matrix, `(batch, heads, seq, seq)`: for an attention layer whose
            output is `M · X` (every fused-form program) the weights `M`, NaN for programs without such a matrix
            (see `AutoBertZeroSearchedAttention`); for a convolution the banded matrix of its normalised kernel
            (see `AutoBertZeroLightweightConv.mixing_matrix`). They stack (`torch.stack(outputs.attentions)`) when
            `conv_num_heads == num_attention_heads`, the default.
        use_interpreter (`bool`, *optional*, defaults to `False`):
            Run every attention program through the general interpreter instead of fused attention kernels
            (for testing that both paths agree; slower).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        token_mask = None
        fused_mask = None
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape != embedding_output.shape[:2]:
                raise ValueError(
                    f"attention_mask: expected shape (batch, seq) = {tuple(embedding_output.shape[:2])}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            # A batch without padding skips all masking work (SPEC §2), but whether it has padding is data:
            # a traced graph (torch.export, ONNX, torch.compile) cannot branch on it, so it always masks.
            if is_tracing(attention_mask) or not bool(attention_mask.all()):
                token_mask = attention_mask.bool()[:, None, :]  # (batch, 1, seq)
                if self._uses_fused_attention:
                    fused_mask = create_bidirectional_mask(
                        config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
                    )

        encoder_outputs = self.encoder(
            embedding_output,
            token_mask,
            fused_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            use_interpreter=use_interpreter,
        )
        sequence_output = encoder_outputs.last_hidden_state
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


def masked_lm_scores(
    head: nn.Module, sequence_output: torch.Tensor, labels: torch.Tensor | None, sparse_prediction: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """MLM logits and loss, as every `transformers` MLM head computes them: logits `(batch, seq, vocab_size)`,
    the loss a cross-entropy over the labelled positions (labels -100 are ignored).

    With `sparse_prediction` (the config field) and `labels`, only the labelled positions go through the head,
    as fairseq, ELECTRA and ModernBERT do: the loss is the same, the logits have shape `(num_labelled,
    vocab_size)` in the order of `labels[labels != -100]`. The vocabulary projection is the costliest part of
    pretraining a small model (at `small` about as much as the encoder) and only ~15% of the positions have a
    label, so this project's pretraining switches it on while it trains.
    """
    if labels is None or not sparse_prediction:
        scores = head(sequence_output)  # (batch, seq, vocab_size)
        loss = None if labels is None else CrossEntropyLoss()(scores.view(-1, scores.shape[-1]), labels.view(-1))
        return scores, loss
    labelled = labels != -100
    scores = head(sequence_output[labelled])  # (num_labelled, vocab_size)
    return scores, CrossEntropyLoss()(scores, labels[labelled])


@dataclass
class AutoBertZeroForPreTrainingOutput(ModelOutput):
    """Like `BertForPreTrainingOutput`, with the two losses also reported separately for logging.

    `prediction_logits` has shape `(batch, seq, vocab_size)`, or `(num_labelled, vocab_size)` when `labels` are
    given and the config's `sparse_prediction` is on (see `masked_lm_scores`).
    """

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    masked_lm_loss: torch.Tensor | None = None
    next_sentence_loss: torch.Tensor | None = None


_TIED_MLM_DECODER = {
    "cls.predictions.decoder.weight": "autobert_zero.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


class AutoBertZeroForPreTraining(AutoBertZeroPreTrainedModel):
    """Backbone + MLM and NSP heads, trained with the sum of both losses (BERT's pretraining)."""

    _tied_weights_keys = _TIED_MLM_DECODER

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__(config)
        self.autobert_zero = AutoBertZeroModel(config)
        self.cls = AutoBertZeroPreTrainingHeads(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | AutoBertZeroForPreTrainingOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            MLM targets; -100 marks positions without a loss. With the config's `sparse_prediction` on, logits are
            computed at the labelled positions only and `prediction_logits` has shape `(num_labelled, vocab_size)`.
        next_sentence_label (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            0 if segment B continues segment A, 1 if it is a random segment.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.autobert_zero(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        prediction_scores, masked_lm_loss = masked_lm_scores(
            self.cls.predictions, outputs.last_hidden_state, labels, self.config.sparse_prediction
        )
        seq_relationship_score = self.cls.seq_relationship(outputs.pooler_output)

        total_loss = next_sentence_loss = None
        if labels is not None and next_sentence_label is not None:
            next_sentence_loss = CrossEntropyLoss()(seq_relationship_score.view(-1, 2), next_sentence_label.view(-1))
            total_loss = masked_lm_loss + next_sentence_loss

        output = AutoBertZeroForPreTrainingOutput(
            loss=total_loss,
            prediction_logits=prediction_scores,
            seq_relationship_logits=seq_relationship_score,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            masked_lm_loss=masked_lm_loss,
            next_sentence_loss=next_sentence_loss,
        )
        return output if return_dict else output.to_tuple()


class AutoBertZeroOnlyMLMHead(nn.Module):
    """The MLM head under BERT's parameter names (`cls.predictions.*`)."""

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__()
        self.predictions = AutoBertZeroLMPredictionHead(config)


class AutoBertZeroForMaskedLM(AutoBertZeroPreTrainedModel):
    _tied_weights_keys = _TIED_MLM_DECODER

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__(config)
        self.autobert_zero = AutoBertZeroModel(config, add_pooling_layer=False)
        self.cls = AutoBertZeroOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | MaskedLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            MLM targets; -100 marks positions without a loss. With the config's `sparse_prediction` on, logits are
            computed at the labelled positions only and `logits` has shape `(num_labelled, vocab_size)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.autobert_zero(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        prediction_scores, loss = masked_lm_scores(
            self.cls.predictions, outputs.last_hidden_state, labels, self.config.sparse_prediction
        )
        output = MaskedLMOutput(
            loss=loss, logits=prediction_scores, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class AutoBertZeroForSequenceClassification(AutoBertZeroPreTrainedModel):
    """Pooled first token → dropout → linear; regression, single- or multi-label loss as in BERT."""

    _keys_to_ignore_on_load_missing = [r"^classifier\.", r"(^|\.)pooler\."]  # a new head (see the base class)

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.autobert_zero = AutoBertZeroModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | SequenceClassifierOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.autobert_zero(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))

        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif self.num_labels > 1 and labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = MSELoss()(logits.squeeze(), labels.squeeze()) if self.num_labels == 1 else MSELoss()(logits, labels)
            elif self.config.problem_type == "single_label_classification":
                loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
            else:
                loss = BCEWithLogitsLoss()(logits, labels)
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class AutoBertZeroForMultipleChoice(AutoBertZeroPreTrainedModel):
    """Each choice encoded separately, pooled, scored by one linear unit; softmax over the choices."""

    _keys_to_ignore_on_load_missing = [r"^classifier\.", r"(^|\.)pooler\."]  # a new head (see the base class)

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__(config)
        self.autobert_zero = AutoBertZeroModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | MultipleChoiceModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, num_choices, sequence_length)`):
            One encoded sequence per choice.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Index of the correct choice.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        num_choices = input_ids.shape[1] if input_ids is not None else inputs_embeds.shape[1]

        def flatten(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.reshape(-1, *tensor.shape[2:])

        outputs = self.autobert_zero(
            flatten(input_ids),
            attention_mask=flatten(attention_mask),
            token_type_ids=flatten(token_type_ids),
            position_ids=flatten(position_ids),
            inputs_embeds=flatten(inputs_embeds),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        reshaped_logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = CrossEntropyLoss()(reshaped_logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(
            loss=loss, logits=reshaped_logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class AutoBertZeroForTokenClassification(AutoBertZeroPreTrainedModel):
    """A linear classifier on every token's last hidden state (NER, POS tagging)."""

    _keys_to_ignore_on_load_missing = [r"^classifier\."]  # a new head (see the base class)
    def __init__(self, config: AutoBertZeroConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.autobert_zero = AutoBertZeroModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | TokenClassifierOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.autobert_zero(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class AutoBertZeroForQuestionAnswering(AutoBertZeroPreTrainedModel):
    """Extractive QA (SQuAD): a linear layer gives start and end logits per token."""

    _keys_to_ignore_on_load_missing = [r"^qa_outputs\."]  # a new head (see the base class)

    def __init__(self, config: AutoBertZeroConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.autobert_zero = AutoBertZeroModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | QuestionAnsweringModelOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.autobert_zero(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in logits.split(1, dim=-1))

        total_loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence are clamped to an ignored index, as in BERT
            ignored_index = start_logits.size(1)
            start_positions = start_positions.view(-1).clamp(0, ignored_index)
            end_positions = end_positions.view(-1).clamp(0, ignored_index)
            loss_fct = CrossEntropyLoss(ignore_index=ignored_index)
            total_loss = (loss_fct(start_logits, start_positions) + loss_fct(end_logits, end_positions)) / 2
        output = QuestionAnsweringModelOutput(
            loss=total_loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "AutoBertZeroModel",
    "AutoBertZeroPreTrainedModel",
    "AutoBertZeroForPreTraining",
    "AutoBertZeroForMaskedLM",
    "AutoBertZeroForSequenceClassification",
    "AutoBertZeroForMultipleChoice",
    "AutoBertZeroForTokenClassification",
    "AutoBertZeroForQuestionAnswering",
    "run_program",
]
