"""AutoBERT-Zero for `transformers`: importing this package registers it with the Auto classes.

Saved checkpoints also carry the config/modeling code and a complete `auto_map`, so they load with
`AutoModel*.from_pretrained(path, trust_remote_code=True)` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .attention_programs import (
    OPS,
    Program,
    ProgramError,
    canonical_program,
    check_program,
    fused_attention_plan,
    infer_shapes,
    parse_program,
    program_key,
    validate_program,
)
from .configuration_autobert_zero import AutoBertZeroConfig
from .modeling_autobert_zero import (
    AutoBertZeroForMaskedLM,
    AutoBertZeroForMultipleChoice,
    AutoBertZeroForPreTraining,
    AutoBertZeroForQuestionAnswering,
    AutoBertZeroForSequenceClassification,
    AutoBertZeroForTokenClassification,
    AutoBertZeroModel,
    AutoBertZeroPreTrainedModel,
)


_AUTO_REGISTRY = {
    AutoModel: AutoBertZeroModel,
    AutoModelForPreTraining: AutoBertZeroForPreTraining,
    AutoModelForMaskedLM: AutoBertZeroForMaskedLM,
    AutoModelForSequenceClassification: AutoBertZeroForSequenceClassification,
    AutoModelForQuestionAnswering: AutoBertZeroForQuestionAnswering,
    AutoModelForTokenClassification: AutoBertZeroForTokenClassification,
    AutoModelForMultipleChoice: AutoBertZeroForMultipleChoice,
}

AutoConfig.register(AutoBertZeroConfig.model_type, AutoBertZeroConfig, exist_ok=True)
AutoBertZeroConfig.register_for_auto_class()
for _auto_class, _model_class in _AUTO_REGISTRY.items():
    _auto_class.register(AutoBertZeroConfig, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_class.__name__)

__all__ = [
    "OPS",
    "Program",
    "ProgramError",
    "canonical_program",
    "check_program",
    "fused_attention_plan",
    "infer_shapes",
    "parse_program",
    "program_key",
    "validate_program",
    "AutoBertZeroConfig",
    "AutoBertZeroPreTrainedModel",
    *(model_class.__name__ for model_class in _AUTO_REGISTRY.values()),
]
