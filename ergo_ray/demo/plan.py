"""The demo's stages, in order, as CLI invocations; finished stages are skipped on re-run.

Each stage writes a ``_done.json`` marker into its output folder when it succeeds, so an
interrupted demo continues from the first unfinished stage. Stages run in-process through
:func:`ergo_ray.cli.main.main` and share one Ray instance.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ergo_ray.config.schema import RunConfig
from ergo_ray.errors import ErgoRayError
from ergo_ray.io import storage

log = logging.getLogger("ergo_ray")

#: Number of galaxies per domain relative to ``mock.n_per_domain``.
DOMAIN_WEIGHTS = {"tng100": 1.0, "tng50": 0.5, "eagle": 0.35, "simba": 0.35, "hsc": 0.6}
SIM_TRAIN = ("tng100", "tng50")


@dataclass
class Stage:
    """One step of the demo.

    Attributes
    ----------
    name : str
        Short name shown in progress lines and the report.
    argv : list of str
        Arguments for ``ergo-ray`` (stage first).
    out : str
        Output URL whose ``_done.json`` marks the stage finished.
    """

    name: str
    argv: list[str]
    out: str
    seconds: float | None = field(default=None)


def build_plan(out: str, cfg: RunConfig, common: Sequence[str], n_per_domain: int | None = None
               ) -> list[Stage]:
    """Return the demo's stages for an output URL.

    Parameters
    ----------
    out : str
        Demo output folder URL.
    cfg : RunConfig
        Resolved configuration (``mock.n_per_domain``, ``seed``).
    common : sequence of str
        Options passed to every stage (preset, config files, overrides).
    n_per_domain : int, optional
        Overrides ``cfg.mock.n_per_domain``.

    Returns
    -------
    list of Stage
        The stages in execution order.
    """
    j = lambda *p: storage.join(out, *p)  # noqa: E731
    n = n_per_domain or cfg.mock.n_per_domain
    seed = str(cfg.seed)
    c = list(common)
    plan: list[Stage] = []

    def add(name: str, argv: list[str], out: str) -> None:
        plan.append(Stage(name, [*argv, *c], out))

    add("stamps", ["stamps", "--out", j("stamps", "stamps.png"), "--n", "6", "--seed", seed],
        j("stamps"))
    for dom, w in DOMAIN_WEIGHTS.items():
        add(f"mock {dom}", ["mock", "--domain", dom, "--n", str(max(8, int(n * w))),
                            "--projections", str(cfg.mock.projections), "--seed", seed,
                            "--format", "shards", "--out", j("mock", dom)], j("mock", dom))
    for dom in DOMAIN_WEIGHTS:
        add(f"prepare {dom}", ["prepare", "--in", j("mock", dom), "--out", j("prepared", dom)],
            j("prepared", dom))
    add("match hsc→tng100", ["match", "--observed", j("prepared", "hsc"), "--simulated",
                             j("prepared", "tng100"), "--out", j("match")], j("match"))
    add("train-nnclr", ["train-nnclr", "--data", *[j("prepared", d) for d in DOMAIN_WEIGHTS],
                        "--out", j("nnclr")], j("nnclr"))
    # the widening is fitted on held-out simulated domains, which train-cinn then also reads
    held_out = [d for d in cfg.cinn.widening.domains if d in DOMAIN_WEIGHTS and d != "hsc"
                ] if cfg.cinn.widening.enabled else []
    add("train-cinn", ["train-cinn", "--data",
                       *[j("prepared", d) for d in (*SIM_TRAIN, *held_out)],
                       "--encoder", j("nnclr"), "--out", j("model"), "--baseline"], j("model"))
    add("catalog hsc", ["catalog", "--model", j("model"), "--in", j("prepared", "hsc"),
                        "--out", j("catalog")], j("catalog"))
    add("validate tng", ["validate", "--model", j("model"), "--in",
                         *[j("prepared", d) for d in SIM_TRAIN], "--out", j("validate", "tng")],
        j("validate", "tng"))
    add("validate eagle", ["validate", "--model", j("model"), "--in", j("prepared", "eagle"),
                           "--split", "all", "--out", j("validate", "eagle")],
        j("validate", "eagle"))
    add("validate hsc", ["validate", "--model", j("model"), "--in", j("prepared", "hsc"),
                         "--truth", j("mock", "hsc", "truth"), "--split", "all",
                         "--out", j("validate", "hsc")], j("validate", "hsc"))
    sets = [a for d in DOMAIN_WEIGHTS for a in ("--set", f"{d}={j('prepared', d)}")]
    add("compare", ["compare", "--model", j("model"), *sets, "--observed", "hsc",
                    "--out", j("compare")], j("compare"))
    return plan


def run_plan(plan: Sequence[Stage], cfg: RunConfig,
             runner: Callable[[list[str]], int]) -> list[Stage]:
    """Run the stages in order, skipping those already marked done.

    Parameters
    ----------
    plan : sequence of Stage
        From :func:`build_plan`.
    cfg : RunConfig
        For storage settings.
    runner : callable
        Runs one ``ergo-ray`` argument list and returns its exit status.

    Returns
    -------
    list of Stage
        The stages with their wall times (from the marker for skipped stages).

    Raises
    ------
    ErgoRayError
        When a stage fails; its name and exit status are in the message.
    """
    total = len(plan)
    for i, st in enumerate(plan, 1):
        marker = storage.join(st.out, "_done.json")
        if storage.exists(marker, cfg.storage):
            done = json.loads(storage.read_bytes(marker, cfg.storage))
            st.seconds = float(done.get("seconds", 0.0))
            log.info("[%d/%d] %s: already done (%.0f s), skipping", i, total, st.name, st.seconds)
            continue
        log.info("[%d/%d] %s ...", i, total, st.name)
        t0 = time.perf_counter()
        rc = runner(st.argv)
        st.seconds = time.perf_counter() - t0
        if rc != 0:
            msg = f"demo stage '{st.name}' failed with exit status {rc}; re-run the demo to resume"
            raise ErgoRayError(msg)
        storage.write_bytes(marker, json.dumps({"stage": st.name, "seconds": st.seconds}).encode(),
                            cfg.storage)
        log.info("[%d/%d] %s: done in %.1f s", i, total, st.name, st.seconds)
    return list(plan)
