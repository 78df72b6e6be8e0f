"""Typed, validated parameters: one pydantic model per `params.yaml` section.

One source of values: `params.yaml` holds every value, these models hold only the types, ranges and
descriptions. No field has a default, so a key the file leaves out is an error that names it
(`params.yaml: missing train.learning_rate`), never a value from the code that the file, DVC's
params tracking and `dvc exp show` would not show. Why the file and not the models: DVC reads params
from the file (`dvc.yaml` lists its keys, `dvc exp run -S` edits it), and users edit it; a second
copy of each value in code had to be kept equal to it by a test.

Every stage loads the whole file through `load_params`, so a missing key, an unknown key or an
out-of-range value anywhere stops the stage before any work, with a message naming the key (e.g.
`student.learning_rate`).

Code that wants params.yaml's values with a few changed (tests, benchmarks) asks the section for
them: `TrainParams.defaults(max_steps=3)`, `Params.defaults(env={"max_steps": 8})` (a dict merges
into a nested section). They come from the checkout's own params.yaml (`REPO_PARAMS`, beside the
`teachable` package), read whatever the working directory; outside a checkout there is none, and the
error says to load a file instead.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


class ParamsError(ValueError):
    """Raised for a params file that does not validate; the message names each bad key."""


class Section(BaseModel):
    # NaN and inf are refused (`.inf` once passed for train.num_train_epochs and failed late,
    # issue 33)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def defaults(cls, **overrides) -> Self:
        """This section as the checkout's params.yaml sets it, with `overrides` on top (a dict value
        merges into the nested section of that name); validated, so a bad override is a ParamsError
        naming its key."""
        path = _section_paths().get(cls)
        if path is None:
            raise ParamsError(
                f"{cls.__name__} is no section of params.yaml: ask for the section that holds it"
            )
        for key in reversed(path):
            overrides = {key: overrides}
        params = parse_params(
            _merge(copy.deepcopy(_repo_values()), overrides), f"{REPO_PARAMS} + overrides"
        )
        for key in path:
            params = getattr(params, key)
        return params


class EnvParams(Section):
    name: Literal["babyai", "shop", "retail"]
    levels: list[str] = Field(
        min_length=1,
        description="BabyAI level names, or shop / retail task families; "
        "checked against the environment by `envs.configure_envs`",
    )
    max_steps: int = Field(ge=1, le=1000)
    history_len: int = Field(ge=0, le=16, description="previous actions shown in the prompt")


class ShopParams(Section):
    """The WebShop-style shop (env.name: shop): its catalogue, search index and open-action
    sampling."""

    source: Literal["generated", "webshop"] = Field(
        description="generated catalogue or WebShop files"
    )
    n_products: int = Field(ge=1, le=10_000_000, description="generated catalogue size")
    catalog_seed: int = Field(ge=0, description="generated catalogue seed")
    webshop_items: str | None = Field(description="source webshop: WebShop's items_shuffle*.json")
    webshop_instructions: str | None = Field(
        description="source webshop: items_human_ins.json (optional)"
    )
    n_query_samples: int = Field(
        ge=0, le=64, description="student-sampled queries scored on a search page"
    )
    reward: Literal["webshop", "simple"] = Field(
        description="WebShop's reward rules, or the earlier exact-match rule (for old runs)"
    )
    webshop_rules: Literal["master", "v2"] = Field(
        description=(
            "with reward webshop: the WebShop branch whose option rules score a purchase (master: "
            "fuzzy sizes; v2: exact sizes, a goal value in the title counts)"
        )
    )

    @model_validator(mode="after")
    def _webshop_needs_items(self) -> ShopParams:
        if self.source == "webshop" and not self.webshop_items:
            raise ValueError("source webshop needs webshop_items (a path to WebShop's items JSON)")
        return self


class PaidModelParams(Section):
    """A model behind the OpenAI-compatible client (`teachable.core.openai_client`; OPENAI_API_KEY):
    which one, where, and its budget over all runs. The teacher and retail's LLM user each have
    one."""

    model: str
    base_url: str | None = Field(description="any OpenAI-compatible server; null = api.openai.com")
    temperature: float = Field(ge=0, le=2)
    max_tokens: int = Field(ge=16, le=4096)
    client_retries: int = Field(
        ge=0, le=10, description="the openai client's own retries (429, 5xx)"
    )
    timeout_s: float = Field(gt=0)
    max_calls: int = Field(ge=0)
    max_usd: float = Field(ge=0)
    usd_per_mtok_in: float = Field(ge=0)
    usd_per_mtok_out: float = Field(ge=0)
    max_consecutive_failures: int = Field(
        ge=1,
        le=100,
        description="stop after this many calls in a row that got no answer (timeouts, connection)",
    )


class RetailUserLLMParams(PaidModelParams):
    """retail.user: llm: the model that plays the customer, with the teacher's cache, spend ledger,
    budget and pre-flight check."""


class RetailParams(Section):
    """The tau-bench-style customer-service domain (env.name: retail): its database, generated
    in-process from these numbers, or tau-bench's own retail data and tasks."""

    source: Literal["generated", "taubench"] = Field(
        description="generated database or tau-bench's"
    )
    n_users: int = Field(ge=2, le=100_000)
    orders_per_user: int = Field(ge=1, le=50)
    n_products: int = Field(ge=2, le=10_000)
    db_seed: int = Field(ge=0, description="generated database seed")
    taubench_dir: str | None = Field(description="source taubench: path to tau_bench/envs/retail")
    task_split: Literal["train", "dev", "test"] = Field(
        description="source taubench: tau-bench's task split (tasks_<split>.py)"
    )
    parse_failure: Literal["count", "respond"] = Field(
        description="a generated reply no action parses from: a parse failure that wastes the step "
        "(count), or as in tau-bench a message to the user with its text (respond); recorded "
        "as a parse failure either way"
    )
    user: Literal["scripted", "llm"] = Field(
        description="who plays the customer: the offline scripted "
        "user, or a model playing the task (user_llm)"
    )
    unplayable: Literal["keep", "drop"] = Field(
        description="source taubench: tasks whose instruction the "
        "scripted user cannot play (conditions, changes "
        "of mind): keep them or drop them"
    )
    user_llm: RetailUserLLMParams

    @model_validator(mode="after")
    def _taubench_needs_dir(self) -> RetailParams:
        if self.source == "taubench" and not self.taubench_dir:
            raise ValueError(
                "source taubench needs taubench_dir (a tau-bench checkout's tau_bench/envs/retail)"
            )
        return self


class PatchRates(Section):
    """Share of behaviour-cloning examples that carry each kind of in-context patch."""

    demo: float = Field(ge=0, le=1)
    hint: float = Field(ge=0, le=1)
    contrast: float = Field(ge=0, le=1)
    placebo: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> PatchRates:
        if self.demo + self.hint + self.contrast + self.placebo > 1:
            raise ValueError("patch rates must sum to at most 1")
        return self


class StudentParams(Section):
    base_model: str | None = Field(description="HF path or id; null builds the offline student")
    dir: str
    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    score_batch_size: int = Field(ge=1, le=4096, description="states per forward pass when scoring")
    # Where the student runs for rollouts, labeling and evaluation: in-process, or an inference
    # server serving base_model (whose local copy still gives the tokenizer and the weights LoRA
    # training starts from)
    backend: Literal["hf", "sglang", "vllm"]
    url: str | None = Field(
        description="the server's base URL, e.g. http://127.0.0.1:30000 (sglang/vllm)"
    )
    max_concurrency: int = Field(ge=1, le=4096, description="requests in flight to the server")
    request_timeout_s: float = Field(gt=0, description="per request; a slower answer is retried")
    max_retries: int = Field(
        ge=0, le=20, description="retries of a failed request, with exponential backoff"
    )
    # Offline student: a pinned build (committed to git, checked by SHA-256) is used when its params
    # match these
    pinned: str | None = Field(description="the pinned offline student (null: build)")
    rebuild: bool = Field(description="build the offline student even where a matching pin exists")
    # Offline student: data
    n_train_tasks: int = Field(ge=1, description="expert demonstrations per level")
    noise: float = Field(
        ge=0, lt=1, description="share of off-expert (DAgger-style) actions in the demos"
    )
    patch_rates: PatchRates
    # Offline student: model (a Qwen3 decoder built from a config)
    vocab_size: int = Field(ge=300, le=65536)
    hidden_size: int = Field(ge=16)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    intermediate_size: int = Field(ge=16)
    max_length: int = Field(ge=128, le=32768, description="context length in tokens (retail: 1536)")
    group_by_length: bool = Field(
        description="batches of examples of similar length: less padding, for "
        "long, uneven prompts (retail)"
    )
    shuffle_length_groups: bool = Field(
        description="with group_by_length: the length-grouped batches in "
        "random order, not longest to shortest in runs of 50"
    )
    # Offline student: training, stopped once held-out success reaches target_success
    learning_rate: float = Field(gt=0, le=1)
    batch_size: int = Field(ge=1)
    max_train_steps: int = Field(ge=1)
    eval_every: int = Field(ge=1)
    n_eval_tasks: int = Field(ge=1)
    eval_temperature: float = Field(ge=0, le=10)
    target_success: float = Field(ge=0, le=1, description="stop training at this held-out success")
    success_band: tuple[float, float]

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> StudentParams:
        if self.backend != "hf" and not (self.url and self.base_model):
            raise ValueError(
                f"backend {self.backend} needs student.url (the server) "
                "and student.base_model (a local copy of the served model: "
                "its tokenizer, and the weights LoRA training starts from)"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.shuffle_length_groups and not self.group_by_length:
            raise ValueError(
                "student.shuffle_length_groups shuffles length-grouped batches: it needs "
                "student.group_by_length: true"
            )
        lo, hi = self.success_band
        if not 0 <= lo <= hi <= 1:
            raise ValueError("success_band must be [lo, hi] with 0 <= lo <= hi <= 1")
        return self


class RolloutParams(Section):
    n_tasks: int = Field(ge=1)
    temperature: float = Field(ge=0, le=10, description="0 = greedy")
    batch_size: int = Field(ge=1, le=4096, description="concurrent episodes")
    action_mode: Literal["score", "generate"]


class SnapshotParams(Section):
    max_snapshots: int = Field(ge=1)
    steps: Literal["all", "last_k"] = Field(description="which steps of a failed episode qualify")
    last_k: int = Field(ge=1, description="with steps=last_k, the last k steps before the failure")
    min_step: int = Field(ge=0, description="skip the first steps (nothing has gone wrong yet)")
    expert_tasks: int = Field(
        ge=0, description="experiment B: expert trajectories to sample states from"
    )
    expert_sample_rate: float = Field(ge=0, le=1)
    retention_max: int = Field(ge=0, description="tasks the base student solves, kept for phase 3")


class TeacherParams(PaidModelParams):
    name: Literal["oracle", "openai"]
    retries: int = Field(ge=0, le=10, description="re-asks after an unusable answer")
    on_invalid: Literal["oracle", "drop"] = Field(
        description="an unusable answer: oracle advice, or drop"
    )
    max_fallback_fraction: float = Field(
        ge=0,
        le=1,
        description="stop the stage once more than this share of the answers so far were unusable",
    )


class LabelParams(Section):
    """Phase 1. Every arm (student, expert action forced, each CPT patch) gets rollouts in rounds of
    `round_size`, all arms on the same sample seeds; a snapshot gets another round while its L_local
    interval straddles `quadrants.L_threshold` (or is wider than `target_width`), up to
    `max_rollouts` per arm. Under `stopping: posterior` the leverage arms stop instead once the
    posterior probability of the wrong side is below `posterior_error`
    (`teachable.labeling.posterior`); the CPT arms get `cpt_rollouts` under either rule."""

    round_size: int = Field(ge=2, description="rollouts per arm added in a round (even)")
    max_rollouts: int = Field(ge=2, description="the cap per leverage arm (student, forced)")
    cpt_rollouts: int = Field(
        ge=2,
        description="rollouts per CPT arm (placebo, demo, contrast, hint), even, "
        "taken in the first rounds",
    )
    alpha: float = Field(gt=0, lt=1, description="chance of a wrong leverage side over all looks")
    stopping: Literal["interval", "posterior"] = Field(
        description=(
            "when the leverage arms stop: interval (the decision interval clears the threshold) | "
            "posterior (the empirical-Bayes posterior is sure of the side; rounds of 4 suit it)"
        )
    )
    posterior_error: float = Field(
        gt=0,
        lt=0.5,
        description="posterior rule: stop once the posterior "
        "probability of the wrong side is below this",
    )
    posterior_prior: Literal["split", "dirichlet"] = Field(
        description=(
            "posterior rule's prior beside the point mass at no effect: split (discordance and "
            "direction Betas, concentrations capped) | dirichlet (the earlier single Dirichlet)"
        )
    )
    target_width: float | None = Field(
        gt=0,
        le=2,
        description="also go on while L_local's 95% interval is "
        "wider than this (null: decide sides only)",
    )
    horizon: int | None = Field(
        ge=1,
        description="steps a rollout gets from the snapshot (null: the episode's "
        "remaining steps, which confounds leverage with time left)",
    )
    temperature: float = Field(ge=0, le=10)
    chunk_size: int = Field(ge=1, description="snapshots labeled and logged for resume together")
    batch_size: int = Field(ge=1, le=4096, description="concurrent episodes")
    skip_leverage: bool
    skip_cpt: bool
    max_snapshots: int | None = Field(ge=1, description="label only the first N snapshots")

    @model_validator(mode="after")
    def _rounds_fit(self) -> LabelParams:
        if self.round_size % 2 or self.max_rollouts % self.round_size:
            raise ValueError("round_size must be even and divide max_rollouts")
        if self.cpt_rollouts % 2 or self.cpt_rollouts > self.max_rollouts:
            raise ValueError(
                "cpt_rollouts must be even (ELP_net splits them in halves) and at most max_rollouts"
            )
        return self


class QuadrantParams(Section):
    """U is exact (the student's distribution), so its threshold is a quantile of U; L_local is a
    noisy estimate, so its threshold is fixed in advance and each snapshot's side is decided by its
    interval during labeling."""

    U_quantile: float = Field(
        gt=0, lt=1, description="the U threshold: this quantile of U (ties go low)"
    )
    U_threshold: float | None = Field(
        ge=0, description="a fixed U threshold instead of the quantile"
    )
    L_threshold: float = Field(ge=-1, lt=1, description="high leverage: L_local above this")
    undetermined: Literal["exclude", "point"] = Field(
        description=(
            "snapshots whose L side stayed undetermined: left out of the "
            "quadrants, or placed by their point estimate"
        )
    )
    min_per_quadrant: int = Field(ge=0)


class TrainParams(Section):
    """LoRA fine-tuning through TRL (the matrix, the micro-runs and the selection runs share it)."""

    method: Literal["sft", "dpo"]
    lora_r: int = Field(ge=1, le=1024)
    lora_alpha: int = Field(ge=1)
    lora_dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)
    learning_rate: float = Field(gt=0, le=1)
    num_train_epochs: float = Field(gt=0)
    max_steps: int = Field(ge=-1, description="> 0 overrides num_train_epochs (-1: epochs)")
    batch_size: int = Field(ge=1)
    gradient_accumulation_steps: int = Field(ge=1)
    save_steps: int = Field(ge=1, description="checkpoint interval, for resuming a killed run")
    dpo_beta: float = Field(gt=0)
    quadrants: list[Literal["Q1", "Q2", "Q3", "Q4"]] = Field(min_length=1)
    formats: list[Literal["demo", "hint", "contrast"]] = Field(min_length=1)
    baselines: list[Literal["random", "all", "self"]] = Field(
        description="random, all; self: the control (a cell's size of snapshots labelled with the "
        "student's own most likely action), reported beside the models, in no gate"
    )
    min_records: int = Field(
        ge=0, description="cells with fewer records are trained and flagged small"
    )
    records_per_cell: int | Literal["min"] | None = Field(
        description=(
            "size-matched cells: every quadrant x format cell and the random baseline subsampled "
            "to this many records (min: the smallest non-empty quadrant's count; null: no matching)"
        )
    )
    n_seeds: int = Field(
        ge=1,
        le=32,
        description="training seeds per cell (each its own subsample and init); "
        "the end-to-end gate tests on seeds [S//2, S): needs >= 3",
    )
    launcher: str = Field(
        description="how dvc.yaml starts a training stage: python, or accelerate "
        "launch --config_file teachable/training/accelerate/<ddp|fsdp>.yaml"
    )

    @field_validator("launcher")
    @classmethod
    def _known_launcher(cls, value: str) -> str:
        if value != "python" and not value.startswith("accelerate launch"):
            raise ValueError("must be python or start with `accelerate launch`")
        return value

    @field_validator("records_per_cell")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1, min or null")
        return value


class MicroTrainParams(Section):
    """Phase 1B: a LoRA micro-run per sampled snapshot, its real gain against the CPT's prediction,
    re-measured on the pre-registered `format` (its patch minus placebo) on a seed stream of its
    own."""

    n_per_quadrant: int = Field(ge=1, description="snapshots sampled per quadrant (all when fewer)")
    format: Literal["demo", "hint", "contrast"] = Field(
        description=(
            "the pre-registered supervision: the CPT arm re-measured and the micro-run's record"
        )
    )
    n_steps: int = Field(ge=1)
    learning_rate: float = Field(gt=0, le=1)
    n_cpt_rollouts: int = Field(
        ge=2,
        description="rollouts of the format's patch and of the placebo, paired "
        "by seed (a stream of their own)",
    )
    n_validation_rollouts: int = Field(
        ge=2,
        description="from the snapshot with and without the adapter, on "
        "the same seeds (a stream of their own)",
    )
    batch_size: int = Field(ge=1, le=4096, description="episodes stepped together")
    alpha: float = Field(
        gt=0, lt=1, description="one-sided level of the CPT validity and Q1 > Q2 tests"
    )
    target_rho: float = Field(
        gt=0, lt=1, description="the correlation the CPT validity gate asks for"
    )
    strict_gates: bool = Field(
        description="exit 1 when a gate fails (the seeds' exit-code contract)"
    )

    @field_validator("n_validation_rollouts", "n_cpt_rollouts")
    @classmethod
    def _even(cls, n: int) -> int:
        if n % 2:
            raise ValueError("must be even (the split-half reliabilities)")
        return n


class EvaluateParams(Section):
    """Phase 3. Held-out snapshots are those whose task seed falls in `holdout_fraction` (see
    `tasks.is_heldout`): training (matrix, recovery, selection) never sees them."""

    holdout_fraction: float = Field(
        gt=0, lt=1, description="share of snapshot tasks held out for evaluation"
    )
    n_tasks: int = Field(ge=1, description="held-out tasks per model (end-to-end success)")
    n_snapshots_per_quadrant: int = Field(ge=1, description="held-out snapshots per quadrant")
    n_rollouts: int = Field(
        ge=1,
        le=64,
        description="rollouts per item on every panel (same seeds for every "
        "model); > 1 only makes sense with temperature > 0",
    )
    retention_max: int = Field(ge=1, description="retention-panel tasks evaluated per model")
    n_learning_snapshots: int = Field(
        ge=0,
        description="learning panel: per trained adapter, up to this many "
        "of its own training snapshots (0: no panel)",
    )
    n_learning_rollouts: int = Field(
        ge=1, le=64, description="learning panel: rollouts per snapshot"
    )
    temperature: float = Field(
        ge=0, le=10, description="the labeling's temperature; 0 = greedy (the seeds)"
    )
    batch_size: int = Field(ge=1, le=4096)


class PredictorTargets(Section):
    """The seeds' thresholds for the phase 4 gates."""

    r2_U: float = Field(ge=-1, le=1)
    r2_L: float = Field(ge=-1, le=1)
    accuracy: float = Field(ge=0, le=1)


class PredictorParams(Section):
    """Phase 4: predict teachability from cheap observables (no rollouts)."""

    embedder: Literal["hashing", "sentence-transformers"]
    embedding_dim: int = Field(ge=8, le=65536)
    sentence_model: str | None = Field(
        description="local sentence-transformers path (no hub downloads)"
    )
    model: Literal["forest", "linear"] = Field(
        description="random forests, or scaled ridge / logistic"
    )
    n_folds: int = Field(ge=2, description="cross-validation folds, grouped by task")
    alpha: float = Field(gt=0, description="model linear: ridge / logistic regularisation strength")
    ks: list[PositiveInt] = Field(min_length=1, description="K for P@K, NDCG@K")
    targets: PredictorTargets = Field(description="the seeds' thresholds")


class SelectParams(Section):
    """Phase 5 (H7): choose `budget` training snapshots by each method, train each with the `train`
    recipe."""

    budget: int = Field(ge=1, description="K snapshots per method")
    methods: list[Literal["random", "entropy", "predictor", "oracle"]] = Field(min_length=1)
    format: Literal["demo", "hint", "contrast"]


class GateParams(Section):
    """The pre-specified tests of phases 3-5: their level and the smallest effects worth having."""

    alpha: float = Field(gt=0, lt=0.5, description="level of every phase 3-5 gate (one-sided)")
    min_effect: float = Field(
        gt=0,
        lt=1,
        description="smallest success-rate difference worth having: a gain "
        "gate fails when its interval rules this out",
    )
    retention_margin: float = Field(
        gt=0, lt=1, description="non-inferiority margin for retention (the seeds' -3%)"
    )
    n_resamples: int = Field(
        ge=99, le=100_000, description="permutations / bootstrap draws per test"
    )


class Params(Section):
    seed: int = Field(ge=0)
    gpus: str | None = Field(
        pattern=r"^\d+(,\d+)*$",
        description="CUDA_VISIBLE_DEVICES for every stage, e.g. 0 or 0,1: pins a queued "
        "experiment to its GPUs (null: the environment's)",
    )

    threads: int | None = Field(
        ge=1,
        le=1024,
        description="torch's CPU threads in every stage (null: OMP_NUM_THREADS if set, else "
        "one per core); on a shared CPU 1 is often faster",
    )

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_list(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    env: EnvParams
    shop: ShopParams
    retail: RetailParams
    student: StudentParams
    rollouts: RolloutParams
    snapshots: SnapshotParams
    teacher: TeacherParams
    label: LabelParams
    quadrants: QuadrantParams
    train: TrainParams
    micro_train: MicroTrainParams
    evaluate: EvaluateParams
    predictor: PredictorParams
    select: SelectParams
    gates: GateParams


def _describe(error: ValidationError, source: str) -> str:
    """One line naming every missing key where that is all that is wrong; else a line per bad
    key."""
    missing = [".".join(map(str, err["loc"])) for err in error.errors() if err["type"] == "missing"]
    if missing and len(missing) == error.error_count():
        return (
            f"{source}: missing {', '.join(missing)} (every key must be set: "
            "see the repository's params.yaml)"
        )
    lines = [f"invalid parameters in {source}:"] + (
        [f"  missing {', '.join(missing)}"] if missing else []
    )
    for err in error.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif err["type"] != "missing":
            lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params") -> Params:
    """A whole params dict, validated: every key of every section must be there."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ParamsError(_describe(error, source)) from None


def _read_yaml(path: str | Path) -> dict:
    """A params file's raw values; a syntax error is one line naming where, not a traceback."""
    path = Path(path)
    with path.open() as fh:
        try:
            return yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ParamsError(
                f"{path} is not valid YAML{at} ({getattr(err, 'problem', None) or err}): fix its "
                "syntax"
            ) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """The params file, validated: a missing key, an unknown key or a bad value is a ParamsError
    naming it."""
    return parse_params(_read_yaml(path), str(path))


@functools.cache
def _repo_values() -> dict:
    if not REPO_PARAMS.is_file():
        raise ParamsError(
            f"no params.yaml at {REPO_PARAMS}: a section's defaults() are "
            "the values of the params.yaml in a teachable-moments checkout; "
            "outside one, load_params(your params.yaml)"
        )
    return _read_yaml(REPO_PARAMS)


def _merge(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        base[key] = _merge(base[key], value) if nested else value
    return base


@functools.cache
def _section_paths() -> dict[type, tuple[str, ...]]:
    """Each section model and where params.yaml holds it: {TrainParams: ("train",), PatchRates:
    ("student", "patch_rates"), Params: ()}."""
    paths, todo = {}, [(Params, ())]
    while todo:
        model, path = todo.pop()
        if model in paths:  # one class in two places: defaults() could not tell which
            raise TypeError(
                f"{model.__name__} is both {'.'.join(paths[model])} and {'.'.join(path)}"
            )
        paths[model] = path
        todo += [
            (field.annotation, path + (name,))
            for name, field in model.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
        ]
    return paths
