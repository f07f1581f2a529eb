"""The configuration tree.

Every section maps to the arguments of one stage. Unknown keys and wrong types are errors
(``extra="forbid"``); the tree is frozen once loaded. Presets live in ``presets/*.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ergo_ray.types import CinnObservable, Stretch


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Section):
    """Object-storage access. Credentials fall back to the standard AWS variables."""

    endpoint_url: str | None = None
    region: str | None = None
    anon: bool = False
    key: SecretStr | None = Field(default=None, exclude=True)
    secret: SecretStr | None = Field(default=None, exclude=True)


class MockConfig(_Section):
    """Mock-universe rendering (``ergo-ray mock``)."""

    stamp_px: int = Field(128, ge=32, le=512)
    projections: int = Field(1, ge=1, le=4)
    n_per_domain: int = Field(2000, ge=1)
    mass_mode: Literal["population", "balanced"] = "balanced"
    rows_per_file: int = Field(256, ge=1)
    galaxies_per_task: int = Field(64, ge=1)


class PreprocessConfig(_Section):
    """Petrosian crop, resize and stretch (``ergo-ray prepare``)."""

    crop_factor: float = Field(4.0, gt=0)
    size: int = Field(128, ge=16, le=512)
    stretch: Stretch = "log"
    central_box_px: int = Field(20, ge=4)
    detect_nsigma: float = Field(3.0, gt=0)
    min_area_px: int = Field(16, ge=1)
    rows_per_file: int = Field(1024, ge=1)


class SplitConfig(_Section):
    """Train/validation/test fractions, drawn on ``root_id``."""

    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            msg = f"split fractions must sum to 1, got {total:g}"
            raise ValueError(msg)
        return self


class MatchConfig(_Section):
    """One-to-one box matching of an observed set to a simulated set."""

    dz: float = Field(0.01, gt=0)
    dmag: float = Field(0.1, gt=0)
    dr90_px: float = Field(5.0, gt=0)
    seed: int = 42


class AugmentConfig(_Section):
    """Batched augmentations for contrastive training (method.md §3.4)."""

    rotation_deg: float = Field(15.0, ge=0)
    translate: float = Field(0.25, ge=0, le=1)
    zoom_min: float = Field(1.0, gt=0)
    zoom_max: float = Field(1.1, gt=0)
    flips: bool = True
    blur_sigma_min: float = Field(1e-4, ge=0)
    blur_sigma_max: float = Field(0.1, ge=0)
    noise_sigma_min: float = Field(0.01, ge=0)
    noise_sigma_max: float = Field(0.08, ge=0)


class ClrConfig(_Section):
    """NNCLR representation learning (``ergo-ray train-nnclr``)."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    rep_dim: int = Field(256, ge=2)
    proj_dim: int = Field(256, ge=2)
    pred_hidden: int = Field(1024, ge=2)
    temperature: float = Field(0.04, gt=0)
    memory_bank_size: int = Field(16384, ge=1)
    support_set: Literal["global", "per_worker"] = "global"
    batch_size: int = Field(32, ge=2)
    epochs: int = Field(100, ge=1)
    max_batches_per_epoch: int = Field(350, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    lr_factor: float = Field(0.8, gt=0, lt=1)
    lr_patience: int = Field(3, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    domain_mix: dict[str, float] | None = None
    knn_k: int = Field(10, ge=1)
    monitor_rows: int = Field(2000, ge=16)
    augment: AugmentConfig = AugmentConfig()


class WideningConfig(_Section):
    """Shift-aware posterior widening with the OOD score (:mod:`ergo_ray.models.widening`).

    Fitted by ``train-cinn`` on the rows of ``domains`` among its ``--data`` inputs
    (simulated domains with truth that the cINN does not train on) and on the validation
    split of ``cinn.domains``; stored in the model bundle and applied wherever posteriors
    are drawn (``catalog``, ``validate``, ``compare``, ``sample_posterior``).
    """

    enabled: bool = False
    domains: tuple[str, ...] = ("simba",)
    targets: tuple[Literal["exsitu_frac", "lmm_lookback_gyr", "lmm_log_mass"], ...] = (
        "exsitu_frac",)
    n_bins: int = Field(6, ge=1)
    #: Rows per calibration domain (a seeded subsample; the validation split is kept whole).
    max_rows: int = Field(4000, ge=16)

    @model_validator(mode="after")
    def _simulated_only(self) -> WideningConfig:
        if "hsc" in self.domains:
            msg = ("cinn.widening.domains must not include the observed survey 'hsc': its "
                   "truth is for validate only")
            raise ValueError(msg)
        return self


class CinnConfig(_Section):
    """Conditional INN (``ergo-ray train-cinn``)."""

    n_blocks: int = Field(12, ge=1)
    subnet_width: int = Field(128, ge=2)
    subnet_depth: int = Field(3, ge=1)
    clamp: float = Field(1.0, gt=0)
    cond_dim: int = Field(128, ge=1)
    cond_layers: int = Field(3, ge=0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(2e-4, ge=0)
    batch_size: int = Field(128, ge=2)
    epochs: int = Field(200, ge=1)
    patience: int = Field(20, ge=1)
    lr_factor: float = Field(0.5, gt=0, lt=1)
    lr_patience: int = Field(5, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    #: Standard deviation of Gaussian noise added to the standardised training targets at
    #: every step (method.md §4.3: 0 in the paper's final runs, 0.025 in [CODE-22]). It keeps
    #: the no-merger sentinels from becoming a point mass the likelihood can collapse onto.
    label_noise: float = Field(0.0, ge=0)
    exsitu_transform: Literal["linear", "logit"] = "linear"
    #: Catalogue columns appended to the representation as the cINN's condition. The
    #: method conditions on the representation alone (method.md §4.1; the authors' code
    #: has the option as ``OBSERVABLES``, unset in the paper). The 4 × R90 crop and the
    #: per-image stretch remove the stamp's angular scale and flux: ``redshift`` gives
    #: the distance back and ``i_mag`` (the apparent i-band magnitude) the flux, both
    #: observed for every survey galaxy. Every input of ``catalog`` then needs them.
    observables: tuple[CinnObservable, ...] = ()
    #: Seconds between training checkpoints (the last epoch is always checkpointed). An
    #: epoch of the cINN takes milliseconds to seconds, a Ray Train checkpoint about one
    #: second, so checkpointing every epoch would dominate the stage; 0 checkpoints every
    #: epoch.
    checkpoint_every_s: float = Field(30.0, ge=0)
    n_ood_reference: int = Field(20000, ge=16)
    domains: tuple[str, ...] = ("tng100", "tng50")
    #: Widen each posterior with its OOD score (off: the method as published).
    widening: WideningConfig = WideningConfig()

    @model_validator(mode="after")
    def _widening_held_out(self) -> CinnConfig:
        both = sorted(set(self.widening.domains) & set(self.domains))
        if both:
            msg = (f"cinn.widening.domains {both} are also cinn.domains: the widening is "
                   "fitted on domains the cINN does not train on")
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _distinct_observables(self) -> CinnConfig:
        if len(set(self.observables)) != len(self.observables):
            msg = f"observables must be distinct, got {list(self.observables)}"
            raise ValueError(msg)
        return self


class InferConfig(_Section):
    """Posterior sampling and the catalogue job (``ergo-ray catalog``)."""

    n_samples: int = Field(400, ge=2)
    batch_size: int = Field(256, ge=1)
    actors_min: int = Field(1, ge=1)
    actors_max: int = Field(1, ge=1)
    gpus_per_actor: float = Field(0.0, ge=0)
    cpus_per_actor: float = Field(1.0, gt=0)
    #: Reader tasks running at once (one input unit each); 0: as many as free CPUs allow.
    readers: int = Field(0, ge=0)
    #: Seconds the actor pool waits for its minimum actors before work starts.
    wait_for_actors_s: int = Field(600, ge=1)
    mixed_precision: bool = True
    kde_grid: int = Field(512, ge=16)
    log_every_s: float = Field(30.0, gt=0)


class OodConfig(_Section):
    """Out-of-domain score (method.md §7)."""

    k: int = Field(8, ge=1)
    metric: Literal["l1", "l2"] = "l1"
    quantile: float = Field(0.95, gt=0, lt=1)
    max_per_set: int = Field(20000, ge=16)
    seed: int = 42


class EvaluateConfig(_Section):
    """Validation and comparison figures."""

    umap_neighbors: int = Field(50, ge=2)
    umap_min_dist: float = Field(0.1, ge=0)
    umap_max_points: int = Field(20000, ge=100)
    #: UMAP is fitted on at most this many of the embedded points (equal share per set)
    #: and the rest are placed with ``transform``: the fit's cost grows faster than
    #: linearly, the transform's linearly.
    umap_fit_points: int = Field(4000, ge=100)
    #: Optimisation epochs of the fit (umap-learn's default for large sets: 200).
    umap_epochs: int = Field(200, ge=10)
    #: Posterior samples per galaxy in ``compare``, which uses each galaxy's posterior mean:
    #: 100 samples give it to a tenth of the posterior's width, far below the scatter of a
    #: mass bin, at a quarter of the cINN time of ``infer.n_samples`` (400).
    compare_samples: int = Field(100, ge=2)
    mass_bins: tuple[float, ...] = (9.0, 9.5, 10.0, 10.5, 11.0, 11.5, 12.0)
    #: Torch threads of ``validate`` and ``compare``, which compute in the driver process;
    #: None: every core the process may run on.
    threads: int | None = Field(None, ge=1)


class ClusterConfig(_Section):
    """Ray resources for training and the local instance."""

    workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(0.5, gt=0)
    local_num_cpus: int | None = Field(None, ge=1)
    object_store_mb: int | None = Field(None, ge=64)


class RunConfig(_Section):
    """The whole configuration of a run."""

    preset: str = "local"
    seed: int = 1
    storage: StorageConfig = StorageConfig()
    mock: MockConfig = MockConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    match: MatchConfig = MatchConfig()
    clr: ClrConfig = ClrConfig()
    cinn: CinnConfig = CinnConfig()
    infer: InferConfig = InferConfig()
    ood: OodConfig = OodConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    cluster: ClusterConfig = ClusterConfig()
