"""Run every benchmark of the project and print one table.

Usage: ``python bench/run.py [--quick] [--gpu] [--only NAME ...] [--json FILE]``

Each ``bench/bench_<name>.py`` exposes ``run(quick: bool) -> list[dict]`` with rows
``{"figure", "value", "unit", "goal", "peer", "ratio"}``; ``peer`` is the ceiling or reference
measured in the same run and ``ratio`` is value / peer (or the ratio the goal is stated in).
``--quick`` is a smoke run for CI: small sizes, figures not meant for quoting. ``--gpu``
runs only ``bench_gpu``, the CUDA path (catalogue end to end vs model-only, NNCLR in Ray
Train vs plain PyTorch, cINN training); ``--quick`` and any run on a CUDA machine include
it, and without CUDA it runs on the CPU as a smoke run.

Each benchmark runs in a fresh Python process, as if started on its own: the thread settings
it makes before numpy and torch load (one BLAS/OpenMP thread for the per-core figures) then
hold, and no thread pool, cache or Ray instance of an earlier benchmark is left beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("mock", "preprocess", "nnclr", "summaries", "catalog", "catalog_scale", "ood")


def _load(name: str):  # type: ignore[no-untyped-def]
    path = HERE / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _fmt(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def table(rows: list[dict]) -> str:
    """Format benchmark rows as a Markdown table."""
    head = ("| benchmark | figure | value | unit | goal | peer/ceiling | ratio | how |\n"
            "|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r.get('bench', '')} | {r['figure']} | {_fmt(r.get('value'))} | {r.get('unit', '')} | "
        f"{r.get('goal', '')} | {_fmt(r.get('peer'))} | {_fmt(r.get('ratio'))} | "
        f"{r.get('how', '')} |\n"
        for r in rows
    )
    return head + body


def _plain(value: object) -> object:
    """JSON form of a numpy scalar (its Python value) or of anything else (its text)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _run_isolated(name: str, quick: bool) -> list[dict]:
    """Run ``bench_<name>.run(quick)`` in a fresh interpreter and return its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name,
               "--rows", str(rows_file), *(["--quick"] if quick else [])]
        rc = subprocess.run(cmd, check=False).returncode
        if rc:
            msg = f"bench_{name} exited with status {rc}"
            raise RuntimeError(msg)
        return json.loads(rows_file.read_text())


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table; exit 1 if one failed to run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    p.add_argument("--gpu", action="store_true",
                   help="run the accelerator benchmark (bench_gpu) only")
    p.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rows", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:  # the child process of _run_isolated
        rows_one = _load(args.one).run(quick=args.quick)
        Path(args.rows).write_text(json.dumps(rows_one, default=_plain))
        return 0
    known = [n for n in (*ORDER, "gpu") if (HERE / f"bench_{n}.py").exists()]
    if args.only:
        unknown = sorted(set(args.only) - set(known))
        if unknown:
            p.error(f"--only: no benchmark {', '.join(unknown)} (known: {', '.join(known)})")
    if args.gpu:
        names = ["gpu"]
    elif args.only:
        names = [n for n in known if n in args.only]
    else:
        # the accelerator benchmark: on a CPU only as the smoke run (its figures are a device's)
        names = [n for n in known if n != "gpu" or args.quick or _has_cuda()]
    rows: list[dict] = []
    failed = []
    for name in names:
        t0 = time.perf_counter()
        try:
            out = _run_isolated(name, args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        for r in out:
            rows.append({"bench": name, **r})
        print(f"# bench_{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"{__import__('os').cpu_count()} cores; quick={args.quick}; gpu={args.gpu}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
