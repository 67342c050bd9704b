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


class UniformKSubsetRouting(_Strict):
    """Per position draw k ~ U{1..L}, then route exactly k uniformly chosen modules."""

    type: Literal["uniform_k_subset"] = "uniform_k_subset"


class StaticProbabilityRouting(_Strict):
    """Route each (module, position) to the components independently with probability `p`."""

    type: Literal["static_probability"]
    p: Annotated[float, Field(gt=0, le=1)]


SubsetRouting = Annotated[
    UniformKSubsetRouting | StaticProbabilityRouting, Field(discriminator="type")
]


class StochasticReconSubsetLoss(_Loss):
    classname: Literal["StochasticReconSubsetLoss"]
    routing: SubsetRouting = UniformKSubsetRouting()


class CIMaskedReconLoss(_Loss):
    classname: Literal["CIMaskedReconLoss"]


class CIMaskedReconLayerwiseLoss(_Loss):
    classname: Literal["CIMaskedReconLayerwiseLoss"]


class CIMaskedReconSubsetLoss(_Loss):
    classname: Literal["CIMaskedReconSubsetLoss"]
    routing: SubsetRouting = UniformKSubsetRouting()


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
    routing: SubsetRouting = UniformKSubsetRouting()


class SignPGDOptimizer(_Strict):
    """Persistent sources step by lr · sign(gradient)."""

    type: Literal["sign"]
    lr_schedule: ScheduleConfig


class AdamPGDOptimizer(_Strict):
    """Persistent sources step by Adam's bias-corrected update (ascent), lr from the schedule."""

    type: Literal["adam"]
    lr_schedule: ScheduleConfig
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: Annotated[float, Field(gt=0)] = 1e-8


class SingleSourceScope(_Strict):
    """One source per module, shared by every position of every batch (and every worker)."""

    type: Literal["single_source"]


class BroadcastAcrossBatchScope(_Strict):
    """One source per position index (e.g. per token slot), shared across the batch."""

    type: Literal["broadcast_across_batch"]


class RepeatAcrossBatchScope(_Strict):
    """`n_sources` sources per position index; batch item i uses source i mod n_sources
    (n_sources must divide each worker's batch)."""

    type: Literal["repeat_across_batch"]
    n_sources: PositiveInt


class PerBatchPerPositionScope(_Strict):
    """One source per batch slot and position, sized for each worker's training batch."""

    type: Literal["per_batch_per_position"]


PersistentPGDScope = Annotated[
    SingleSourceScope
    | BroadcastAcrossBatchScope
    | RepeatAcrossBatchScope
    | PerBatchPerPositionScope,
    Field(discriminator="type"),
]


class _PersistentPGD(_Loss):
    """Adversarial sources that persist across steps: each step they ascend the gradient of
    their own term once (plus `n_warmup_steps` extra ascents on the batch before the loss). The
    update uses that gradient, recovered from the backward of the weighted total, so `coeff`
    must be positive."""

    coeff: Annotated[float, Field(gt=0)]
    optimizer: Annotated[SignPGDOptimizer | AdamPGDOptimizer, Field(discriminator="type")]
    scope: PersistentPGDScope
    use_sigmoid_parameterization: bool = False
    n_warmup_steps: Annotated[int, Field(ge=0)] = 0


class PersistentPGDReconLoss(_PersistentPGD):
    classname: Literal["PersistentPGDReconLoss"]


class PersistentPGDReconLayerwiseLoss(_PersistentPGD):
    classname: Literal["PersistentPGDReconLayerwiseLoss"]


class PersistentPGDReconSubsetLoss(_PersistentPGD):
    classname: Literal["PersistentPGDReconSubsetLoss"]
    routing: SubsetRouting = UniformKSubsetRouting()


class StochasticHiddenActsReconLoss(_Loss):
    """Mean squared error of every decomposed module's input under stochastic masks."""

    classname: Literal["StochasticHiddenActsReconLoss"]


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
    | PGDReconSubsetLoss
    | PersistentPGDReconLoss
    | PersistentPGDReconLayerwiseLoss
    | PersistentPGDReconSubsetLoss
    | StochasticHiddenActsReconLoss,
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


class PGDEval(_Strict):
    """The final evaluation's worst case: `n_steps` of sign-gradient ascent on the masks of
    every module at once (the reference's LM recipe: 20 steps of 0.1, one shared source)."""

    n_steps: PositiveInt = 20
    step_size: Annotated[float, Field(gt=0)] = 0.1
    init: Literal["random", "ones", "zeroes"] = "random"
    mask_scope: Literal["unique_per_datapoint", "shared_across_batch"] = "shared_across_batch"


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
    pgd: PGDEval | None = Field(
        default=None, description="add pgd/recon (and for causal LMs CE/KL) under PGD masks"
    )
    hidden_acts_recon: bool = Field(
        default=False, description="add hidden_acts_recon/<module>: input MSE, stochastic masks"
    )
    l0_groups: dict[str, str | list[str]] = Field(
        default={}, description="L0 summed over modules matching fnmatch pattern(s), by name"
    )
    during_training: bool = Field(
        default=False,
        description="also run this whole evaluation every eval_freq steps (same held-out "
        "batches each time) and record it in the store's curves; ddp or one process only",
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


class CITransformerConfig(_Strict):
    """The `global_shared_transformer` CI function: `n_blocks` pre-norm blocks of width `d_model`
    with `n_heads`-head RoPE self-attention over the positions, each followed by a GELU MLP of
    widths `mlp_hidden_dims` (default [4·d_model], the reference's)."""

    d_model: PositiveInt
    n_blocks: PositiveInt
    n_heads: PositiveInt
    mlp_hidden_dims: list[PositiveInt] | None = None
    rope_base: Annotated[float, Field(gt=0)] = 10000.0

    @model_validator(mode="after")
    def _heads_split_d_model(self) -> CITransformerConfig:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model {self.d_model} must split into n_heads {self.n_heads} heads of even "
                "width (RoPE rotates pairs of dimensions)"
            )
        return self


GLOBAL_CI_FN_TYPES = ("global_shared_mlp", "global_shared_transformer")


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
    ci_fn_type: Literal[
        "mlp", "vector_mlp", "shared_mlp", "global_shared_mlp", "global_shared_transformer"
    ] = "vector_mlp"
    ci_fn_hidden_dims: list[PositiveInt] = [8]
    ci_transformer: CITransformerConfig | None = None
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
    shard_target: bool = Field(
        default=False,
        description="Ray Train with --strategy fsdp: shard the frozen target's blocks (layers, "
        "embeddings, head) over the workers too, each gathered only while it runs",
    )

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
        self._check_global_ci_fn()
        return self

    def _check_global_ci_fn(self) -> None:
        transformer = self.ci_fn_type == "global_shared_transformer"
        if transformer and self.ci_transformer is None:
            raise ValueError(
                "ci_transformer: ci_fn_type 'global_shared_transformer' needs it, e.g. "
                "{d_model: 128, n_blocks: 2, n_heads: 4}"
            )
        if not transformer and self.ci_transformer is not None:
            raise ValueError(
                f"ci_transformer is only used by ci_fn_type 'global_shared_transformer', not "
                f"'{self.ci_fn_type}'; remove it"
            )
        default_dims = type(self).model_fields["ci_fn_hidden_dims"].default
        if transformer and self.ci_fn_hidden_dims != default_dims:
            raise ValueError(
                f"ci_fn_hidden_dims {self.ci_fn_hidden_dims} is not used by ci_fn_type "
                "'global_shared_transformer'; set ci_transformer.mlp_hidden_dims instead"
            )
        if (
            self.ci_fn_type == "global_shared_mlp"
            and "ci_fn_hidden_dims" not in self.model_fields_set
        ):
            raise ValueError(
                "ci_fn_hidden_dims: ci_fn_type 'global_shared_mlp' needs it set (the default "
                f"{default_dims} is sized for one module's function; [] means one linear map)"
            )

    @model_validator(mode="after")
    def _check_persistent_pgd(self) -> Config:
        seen: set[str] = set()
        for cfg in self.loss_metric_configs:
            if not isinstance(cfg, _PersistentPGD):
                continue
            if cfg.classname in seen:
                raise ValueError(
                    f"loss_metric_configs lists {cfg.classname} twice; a persistent-PGD term "
                    "keeps its sources under its name, so list each at most once"
                )
            seen.add(cfg.classname)
            scope = cfg.scope
            if isinstance(scope, RepeatAcrossBatchScope) and self.batch_size % scope.n_sources:
                raise ValueError(
                    f"{cfg.classname}.scope.n_sources {scope.n_sources} does not divide "
                    f"batch_size {self.batch_size}; batch item i uses source i mod n_sources"
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
