"""Typed, validated decomposition configs (defaults follow the reference implementation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModulePattern(_Strict):
    """Decompose every module whose name matches `module_pattern` (fnmatch) into C subcomponents."""

    module_pattern: str
    C: PositiveInt


class ScheduleConfig(_Strict):
    """Learning-rate schedule: optional linear warm-up, then constant, linear or cosine decay."""

    start_val: Annotated[float, Field(gt=0)] = 1e-3
    warmup_pct: Annotated[float, Field(ge=0, lt=1)] = 0.0
    final_val_frac: Annotated[float, Field(ge=0, le=1)] = 1.0
    fn_type: Literal["constant", "linear", "cosine"] = "constant"

    @model_validator(mode="after")
    def _constant_has_no_decay(self) -> ScheduleConfig:
        if self.fn_type == "constant" and self.final_val_frac != 1.0:
            raise ValueError("fn_type 'constant' requires final_val_frac 1.0")
        return self


class _Loss(_Strict):
    coeff: float


class FaithfulnessLoss(_Loss):
    classname: Literal["FaithfulnessLoss"]


class StochasticReconLoss(_Loss):
    classname: Literal["StochasticReconLoss"]


class StochasticReconLayerwiseLoss(_Loss):
    classname: Literal["StochasticReconLayerwiseLoss"]


class StochasticReconSubsetLoss(_Loss):
    classname: Literal["StochasticReconSubsetLoss"]


class CIMaskedReconLoss(_Loss):
    classname: Literal["CIMaskedReconLoss"]


class CIMaskedReconLayerwiseLoss(_Loss):
    classname: Literal["CIMaskedReconLayerwiseLoss"]


class CIMaskedReconSubsetLoss(_Loss):
    classname: Literal["CIMaskedReconSubsetLoss"]


class UnmaskedReconLoss(_Loss):
    classname: Literal["UnmaskedReconLoss"]


class ImportanceMinimalityLoss(_Loss):
    """Σ_layers Σ_c mean_pos (g_upper + eps)^p, plus the β frequency term; p may anneal."""

    classname: Literal["ImportanceMinimalityLoss"]
    pnorm: Annotated[float, Field(gt=0)]
    beta: NonNegFloat = 0.0
    eps: NonNegFloat = 1e-12
    p_anneal_start_frac: Annotated[float, Field(ge=0, le=1)] = 1.0
    p_anneal_final_p: Annotated[float, Field(gt=0)] | None = None
    p_anneal_end_frac: Annotated[float, Field(ge=0, le=1)] = 1.0


class _PGD(_Loss):
    init: Literal["random", "ones", "zeroes"] = "random"
    step_size: Annotated[float, Field(gt=0)]
    n_steps: PositiveInt
    mask_scope: Literal["unique_per_datapoint", "shared_across_batch"] = "unique_per_datapoint"


class PGDReconLoss(_PGD):
    classname: Literal["PGDReconLoss"]


class PGDReconLayerwiseLoss(_PGD):
    classname: Literal["PGDReconLayerwiseLoss"]


class PGDReconSubsetLoss(_PGD):
    classname: Literal["PGDReconSubsetLoss"]


LossConfig = Annotated[
    FaithfulnessLoss
    | StochasticReconLoss
    | StochasticReconLayerwiseLoss
    | StochasticReconSubsetLoss
    | CIMaskedReconLoss
    | CIMaskedReconLayerwiseLoss
    | CIMaskedReconSubsetLoss
    | UnmaskedReconLoss
    | ImportanceMinimalityLoss
    | PGDReconLoss
    | PGDReconLayerwiseLoss
    | PGDReconSubsetLoss,
    Field(discriminator="classname"),
]


class IdentityPattern(_Strict):
    """Modules expected to carry one always-distinct subcomponent per input feature."""

    layer_pattern: str
    n_features: PositiveInt


class DensePattern(_Strict):
    """Modules expected to carry k subcomponents that are all active together."""

    layer_pattern: str
    k: PositiveInt


class EvalConfig(_Strict):
    """What evaluation measures besides the training losses."""

    identity_ci: list[IdentityPattern] = []
    dense_ci: list[DensePattern] = []
    ground_truth_module: str | None = Field(
        default=None, description="module whose target columns MMCS/ML2R compare against (TMS)"
    )
    n_eval_batches: PositiveInt = 10
    rounding_threshold: NonNegFloat = Field(
        default=0.0, description="causal LMs: the 'rounded' CE/KL mask is 1[g > this]"
    )


class ToyTargetConfig(_Strict):
    """A toy target trained by spd itself; `overrides` change fields of the named variant."""

    kind: Literal["toy"] = "toy"
    name: str
    overrides: dict[str, Any] = {}


class TextDataConfig(_Strict):
    """Text for a Hugging Face target: a cached corpus (`spd data fetch`) or local .txt file(s),
    cut into windows of `seq_len` tokens; a fixed hash of each passage puts it in train or eval."""

    corpus: str = Field(description="sotu | moby-dick | jane-austen, or a .txt file / folder")
    seq_len: Annotated[int, Field(ge=4)] = 64
    eval_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    shuffle_buffer: PositiveInt = 256


class HFTargetConfig(_Strict):
    """A pretrained `transformers` model from a local directory or .gguf file, or a packaged
    model by name (smollm2-135m, all-minilm-l6-v2); never downloaded from a hub."""

    kind: Literal["hf"]
    model: str
    model_class: str | None = Field(
        default=None, description="transformers class, e.g. LlamaForCausalLM (default: config's)"
    )
    data: TextDataConfig


def _target_kind(value: Any) -> str:
    kind = value.get("kind", "toy") if isinstance(value, dict) else getattr(value, "kind", "toy")
    return str(kind)


TargetConfig = Annotated[
    Annotated[ToyTargetConfig, Tag("toy")] | Annotated[HFTargetConfig, Tag("hf")],
    Discriminator(_target_kind),
]


class Config(_Strict):
    """One decomposition run. Every field has the reference implementation's default."""

    seed: int = 0
    target: TargetConfig | None = None
    module_info: Annotated[list[ModulePattern], Field(min_length=1)]
    pretrained_model_output_attr: str | None = None
    ci_fn_type: Literal["mlp", "vector_mlp", "shared_mlp"] = "vector_mlp"
    ci_fn_hidden_dims: list[PositiveInt] = [8]
    compile_ci_fn: bool = False
    tied_components: list[tuple[str, str]] = []
    sigmoid_type: Literal["leaky_hard", "leaky_hard_paper", "hard", "normal"] = "leaky_hard"
    sampling: Literal["continuous", "binomial"] = "continuous"
    n_mask_samples: PositiveInt = 1
    use_delta_component: bool = True
    loss_metric_configs: Annotated[list[LossConfig], Field(min_length=1)]
    output_loss_type: Literal["mse", "kl"] = "mse"
    batch_size: PositiveInt
    eval_batch_size: PositiveInt | None = None
    steps: PositiveInt
    lr_schedule: ScheduleConfig = ScheduleConfig()
    faithfulness_warmup_steps: Annotated[int, Field(ge=0)] = 0
    faithfulness_warmup_lr: Annotated[float, Field(gt=0)] = 1e-3
    faithfulness_warmup_weight_decay: NonNegFloat = 0.0
    grad_clip_norm_components: Annotated[float, Field(gt=0)] | None = None
    grad_clip_norm_ci_fns: Annotated[float, Field(gt=0)] | None = None
    autocast_bf16: bool = True
    ci_alive_threshold: NonNegFloat = 0.1
    train_log_freq: PositiveInt = 100
    eval_freq: PositiveInt = 1000  # steps between the data-free evaluation figures in the curves
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _check_ci_fn(self) -> Config:
        if self.ci_fn_type == "mlp" and not self.ci_fn_hidden_dims:
            raise ValueError(
                "ci_fn_type 'mlp' needs at least one hidden layer in ci_fn_hidden_dims"
            )
        if self.compile_ci_fn and (self.ci_fn_type != "mlp" or len(self.ci_fn_hidden_dims) != 1):
            raise ValueError(
                "compile_ci_fn needs ci_fn_type 'mlp' with exactly one hidden layer "
                f"(got '{self.ci_fn_type}' with hidden dims {self.ci_fn_hidden_dims})"
            )
        return self

    @property
    def effective_eval_batch_size(self) -> int:
        return self.eval_batch_size or self.batch_size


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown field (not a config option)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "") -> Config:
    """Validate a plain dict into a Config; raise ConfigError naming each bad field."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(path: str | Path) -> Config:
    """Load and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of fields, got {type(data).__name__}"
        )
    return config_from_dict(data, source=str(path))
