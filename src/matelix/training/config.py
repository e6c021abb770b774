"""`TrainConfig`: one validated description of a training run.

It is the `POST /start` body, the file given to `matelix train CONFIG.yaml|json`, and the run's
`train_config.json`. Unknown fields are rejected (the error names them). Paths stay as the user wrote
them (relative to the lab's home); they are confined and resolved by `training.preflight`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from matelix.texts import tr
from matelix.training.config_texts import german_texts

TemplateModeChoice = Literal["auto", "column", "chat", "dialogplus", "messages", "sharegpt", "alpaca"]
SchedulerChoice = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                          "constant_with_warmup", "inverse_sqrt"]

# Other names accepted for two fields (the dataset routes' names); the field names are the documented ones.
FIELD_ALIASES = {"model": "model_dir", "dataset": "csv_path"}
# The n-gram options' names from before they were nested under `ngrams`; still accepted everywhere.
FLAT_NGRAM_NAMES = {"ngram_max": "max_len", "ngram_top_k": "top_k", "ngram_min_count": "min_count",
                    "ngram_min_chars": "min_chars", "ngram_max_samples": "max_samples"}


class ConfigFileError(ValueError):
    """A config file that cannot be read, parsed or validated (the message says where)."""


class NgramOptions(BaseModel):
    """How phrases are mined for the n-gram vocabulary: `TrainConfig.ngrams` and `matelix ngrams mine`."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=german_texts("ngrams."))

    max_len: int = Field(12, ge=2, le=64, description="Longest phrase in tokens.")
    top_k: int = Field(1500, ge=1, le=100_000, description="Most phrases added.")
    min_count: int = Field(8, ge=2, description="Least occurrences for a phrase to be considered.")
    min_chars: int = Field(4, ge=1, description="Shortest phrase in characters.")
    max_samples: int = Field(20_000, ge=1, description="Samples mined at most.")
    screen_tokens: int = Field(10_000, ge=0, le=1_000_000, description=(
        "Tokens of the mined texts the model reads to check each phrase: only phrases it reads more "
        "cheaply than their pieces are added (0 = no check)."))


class TrainConfig(BaseModel):
    """Everything a training run needs; defaults follow the seed's examples."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=german_texts())

    # What to train on.
    model_dir: str = Field(..., min_length=1, validation_alias=AliasChoices("model_dir", "model"),
                           description="Model folder under models/ or training_outputs/, "
                           "or a Hugging Face model id (not when the lab is offline).")
    csv_path: str = Field(..., min_length=1, validation_alias=AliasChoices("csv_path", "dataset"),
                          description="Dataset file under datasets/ (CSV, JSONL or JSON).")
    template_mode: TemplateModeChoice = Field("auto", description="How the file is read; auto = detect from "
                                              "its columns or keys.")
    column_name: str = Field("text", min_length=1, description="Column holding the text, for files with one "
                             "text per row.")
    chat_template: Literal["auto", "matelix"] = Field(
        "auto", description="auto = keep the model's own chat template (MaTeLiX when it has none); "
        "matelix = always install the MaTeLiX template.")
    train_on_prompt: bool = Field(False, description="Train on every token, not only the final answer.")

    # Where and how.
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto = CUDA, then MPS, then CPU.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="auto = bf16 where supported, fp32 on CPU.")
    train_mode: Literal["full", "lora"] = Field("full", description="Full fine-tune or LoRA adapters.")
    nproc: int = Field(1, ge=1, le=64, description="Processes for multi-process (DDP) training; >1 uses torchrun.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    tokens_per_pass: int | None = Field(
        None, ge=64, le=1_048_576, description="Split each batch into forward/backward passes of at most this "
        "many tokens: the same gradients with the activation memory of one pass. Default: 512 on a CPU, "
        "whole batches on a GPU.")

    # Optimisation.
    learning_rate: float = Field(4e-4, gt=0, le=1, description="The highest learning rate, reached after the "
                                 "warm-up.")
    per_device_train_batch_size: int = Field(1, ge=1, le=4096, description="Rows per device per micro-step.")
    gradient_accumulation_steps: int = Field(7, ge=1, le=4096, description="Micro-steps per optimizer step.")
    num_train_epochs: float = Field(3, gt=0, le=10_000, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    lr_scheduler: SchedulerChoice = Field("linear", description="How the learning rate changes over the run.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps with linear warm-up.")
    weight_decay: float = Field(0.0, ge=0, le=10, description="Pulls the weights towards zero (AdamW); 0 = off.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for initialisation, shuffling and the eval split "
                                                         "(0 to 2**32 - 1, numpy's seed range).")

    # Data shaping.
    chunk_size: int = Field(1024, ge=8, le=1_048_576, description="Longer samples are cut to this many "
                            "tokens; shorter ones are packed together or padded.")
    packing: bool = Field(True, description="Pack samples into rows of the maximum sequence length "
                          "(no padding, no attention across samples).")
    shuffle: bool = Field(False, description="Shuffle the training samples (with `seed`).")
    sort_by_length: bool = Field(True, description="Group samples of similar length.")
    eval_split: float = Field(0.0, ge=0, lt=1, description="Fraction of threads held out for evaluation.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps (default: at save steps).")
    probe_file: str | None = Field(None, description="JSONL file under datasets/ with prompts the model answers "
                                   "before training, at every checkpoint and at the end (`messages` or `prompt`, "
                                   "optional `expected`); default: the held-out prompts.")
    max_probes: int = Field(16, ge=1, le=256, description="Most probes answered per evaluation.")
    probe_max_new_tokens: int = Field(48, ge=1, le=1024, description="Length of each probe answer in tokens.")
    early_stopping_patience: int | None = Field(
        None, ge=1, le=1000, description="Stop after this many evaluations without a lower eval loss "
        "(needs eval_split).")
    load_best_model_at_end: bool = Field(False, description="The final model is the checkpoint with the lowest "
                                         "eval loss (needs eval_split; evaluation steps must divide save_steps).")

    # Checkpoints, logging, preview.
    save_steps: int = Field(200, ge=1, description="Write a checkpoint every N optimizer steps.")
    save_total_limit: int | None = Field(2, ge=1, description="Checkpoints kept (oldest removed); empty = keep all.")
    logging_steps: int = Field(1, ge=1, description="Write a metrics line every N optimizer steps.")
    preview_steps: int = Field(25, ge=0, description="Generate a live-preview sample every N steps (0 = never).")
    preview_prompt: str = Field("Hallo! Wer bist du?", max_length=2000,
                                description="User message the live preview answers.")
    preview_max_new_tokens: int = Field(32, ge=1, le=512, description="Length of the live-preview sample.")

    # LoRA.
    lora_r: int = Field(8, ge=1, le=4096, description="Rank of the adapter matrices: higher adapts more and "
                        "needs more memory (8 to 64 is usual).")
    lora_alpha: float = Field(16, gt=0, description="Scales the adapter's update (alpha / rank); often twice "
                              "the rank.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Share of the adapter's inputs dropped "
                                  "while training (against overfitting).")
    lora_target_modules: list[str] | None = Field(
        None, description="Module names to adapt; default = every linear layer except the output head.")
    merge_lora_on_save: bool = Field(True, description="Save a merged full model (else adapter + base reference).")

    # N-gram vocabulary optimisation.
    use_ngrams: bool = Field(False, description="Mine frequent phrases and add them as tokens before training.")
    ngrams: NgramOptions = Field(default_factory=NgramOptions,
                                 description="How the phrases are mined (with use_ngrams).")

    # Several machines and sharded training (docs/SCALING.md).
    nnodes: int = Field(1, ge=1, le=256, description="Machines taking part; more than 1 = a multi-node run that "
                        "the other machines join with `matelix train CONFIG --node-rank K`.")
    node_rank: int = Field(0, ge=0, le=255, description="This machine's number in a multi-node run: 0 owns the "
                           "run (status, logs, checkpoints and the final model); set by `--node-rank`.")
    master_addr: str | None = Field(None, max_length=253, pattern=r"^[A-Za-z0-9.:_\-\[\]]+$",
                                    description="Address of node 0 that every node can reach (needed when "
                                    "nnodes > 1).")
    master_port: int = Field(29500, ge=1024, le=65535, description="Port on node 0 where the nodes meet.")
    node_timeout_s: int = Field(600, ge=10, le=86_400, description="A node that has not joined, or stops "
                                "answering, for this many seconds fails the run.")
    distributed: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="ddp = a full copy of the model per process; fsdp or deepspeed = the model, its "
        "gradients and optimizer state sharded across processes, for models that do not fit one device.")
    deepspeed_stage: Literal[2, 3] = Field(2, description="DeepSpeed ZeRO stage: 2 shards gradients and "
                                           "optimizer state, 3 also the weights.")
    offload: bool = Field(False, description="With fsdp or deepspeed: keep optimizer state (and with fsdp or "
                          "ZeRO-3 the weights) in CPU memory; slower, fits bigger models.")

    # Naming.
    run_name: str | None = Field(None, max_length=100, description="A name for the run, shown instead of its "
                                 "folder name (the folder keeps <model>_<time>).")
    notes: str | None = Field(None, max_length=10_000, description="Free notes about the run; editable later.")

    # Continuation.
    resume_from: str | None = Field(None, description="A run id (its last complete checkpoint) or "
                                    "`<run_id>/checkpoint-N` to continue from.")

    @model_validator(mode="before")
    @classmethod
    def _flat_ngram_names(cls, data):
        return nest_flat_ngram_names(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        if self.eval_steps is not None and self.eval_split == 0:
            raise ValueError(tr("eval_steps is set but eval_split is 0: set eval_split (e.g. 0.1) to evaluate"))
        if (self.early_stopping_patience or self.load_best_model_at_end) and self.eval_split == 0:
            raise ValueError(tr("early_stopping_patience and load_best_model_at_end compare eval losses: set "
                                "eval_split (e.g. 0.1)"))
        if self.load_best_model_at_end and self.eval_steps and self.save_steps % self.eval_steps:
            raise ValueError(tr("load_best_model_at_end needs save_steps ({save}) to be a multiple of eval_steps "
                                "({eval}), so every checkpoint has an eval loss", save=self.save_steps,
                                eval=self.eval_steps))
        if self.nproc > 1 and self.device == "mps":
            raise ValueError(tr("nproc > 1 is not supported on mps; use device cpu or cuda"))
        if self.device == "cpu" and self.precision == "fp16":
            raise ValueError(tr("precision fp16 needs a GPU; use fp32 or bf16 on cpu"))
        self._check_scaling()
        if self.lora_target_modules is not None and not self.lora_target_modules:
            raise ValueError(tr("lora_target_modules is empty: give module names or leave it unset"))
        return self

    def _check_scaling(self) -> None:
        if self.nnodes > 1 and not self.master_addr:
            raise ValueError("nnodes > 1 needs master_addr: the address of node 0 that every node can reach")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes ({self.nnodes})")
        if self.nnodes > 1 and self.device == "mps":
            raise ValueError("multi-node training is not supported on mps; use device cpu or cuda")
        if self.distributed != "ddp" and self.train_mode == "lora":
            raise ValueError(f"distributed {self.distributed} shards a full fine-tune; LoRA trains with ddp")
        if self.distributed != "ddp" and self.device in ("cpu", "mps"):
            raise ValueError(f"distributed {self.distributed} needs CUDA GPUs (accelerate shards only there); "
                             "use ddp on this device")

    @property
    def world_size(self) -> int:
        """Training processes over all nodes."""
        return self.nproc * self.nnodes


def load_config_file(path: Path, base: dict | None = None, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML or JSON config file (its fields over those of `base`, e.g. a preset, and `overrides`, e.g.
    the command line's, over both); raises ConfigFileError naming the file and the offending fields."""
    mapping = read_config_mapping(path)
    try:
        return TrainConfig.model_validate(overlay(overlay(base or {}, mapping), overrides or {}))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise ConfigFileError(f"{path}: {describe(exc)}") from exc


def canonical_names(values: dict) -> dict:
    """`values` with the accepted other names (`model`, `dataset`, the flat `ngram_*` names) replaced by the
    field names."""
    return nest_flat_ngram_names({FIELD_ALIASES.get(key, key): value for key, value in values.items()})


def nest_flat_ngram_names(values: dict) -> dict:
    """`values` with the flat `ngram_*` names moved into `ngrams`; raises ValueError when both say different
    things about one option."""
    flat = {FLAT_NGRAM_NAMES[key]: value for key, value in values.items() if key in FLAT_NGRAM_NAMES}
    if not flat:
        return values
    nested = values.get("ngrams") or {}
    if isinstance(nested, BaseModel):
        nested = nested.model_dump()
    if not isinstance(nested, dict):
        return values  # left to validation, which names the field
    clash = sorted(key for key, value in flat.items() if key in nested and nested[key] != value)
    if clash:
        old = next(name for name, option in FLAT_NGRAM_NAMES.items() if option == clash[0])
        raise ValueError(f"ngrams.{clash[0]} and its old name {old} disagree; give one of them")
    rest = {key: value for key, value in values.items() if key not in FLAT_NGRAM_NAMES}
    return {**rest, "ngrams": {**flat, **nested}}


def overlay(base: dict, over: dict) -> dict:
    """The fields of `over` on top of those of `base` (both in any accepted names); nested options (`ngrams`)
    are merged option by option."""
    base, over = canonical_names(base), canonical_names(over)
    merged = {**base, **over}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
    return merged


def read_config_mapping(path: Path) -> dict:
    """The mapping of fields in a YAML or JSON config file, not yet validated."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc}") from exc
    try:
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{path}: not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {exc}") \
            from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    return data


def describe(exc: ValueError) -> str:
    """One line naming every offending field (unknown fields by name)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "config"
        parts.append(f"unknown field '{field}'" if err.get("type") == "extra_forbidden"
                     else f"{field}: {err.get('msg')}")
    return "; ".join(parts)
