"""Each built-in kind's estimate (`estimate_seconds`, what the quotas count) beside the CPU
time its chunks take when run here one after another in this process (no worker, no
database): how well the paces measured into the kinds' constants still hold.

    .venv/bin/python -m tests.benchmarks.estimates

Writes the `estimates` section of BENCHMARKS.md. Estimates that are upper bounds
(mandelbrot: every pixel inside the set; hash search: the whole nonce space) show it as a
ratio under 1 where the work ends sooner.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from jobs import kinds  # noqa: E402
from jobs.kinds.trial import params_clean, uploads_from  # noqa: E402
from tests.benchmarks.harness import machine  # noqa: E402
from tests.benchmarks.report import write_section  # noqa: E402
from tests.factories import generated_text  # noqa: E402

INSIDE = {"x_min": -0.2, "x_max": 0.1, "y_min": -0.2, "y_max": 0.2}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("burn", {"chunks": 4, "ms": 500}),
    ("mandelbrot", {"width": 256, "height": 128, "max_iter": 500, "chunks": 4, **INSIDE}),
    ("mandelbrot", {"width": 320, "height": 240, "max_iter": 300, "chunks": 4}),
    ("primes", {"start": 0, "stop": 200_000_000, "chunks": 8}),
    ("primes", {"start": 10**10, "stop": 10**10 + 50_000_000, "chunks": 4}),
    ("montecarlo_pi", {"samples": 20_000_000, "chunks": 4}),
    ("hash_search", {"difficulty": 4, "chunks": 4}),
    ("wordcount", {"chunks": 4}),
]


def cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def measure(name: str, given: dict[str, Any], text: Path) -> tuple[float, float]:
    """The kind's estimate and the CPU seconds its chunks took, run in order."""
    kind = kinds.get(name)
    files = {"upload": text} if name == "wordcount" else {}
    params = params_clean(kind, given, files)
    with uploads_from(files):
        estimate = kind.estimate_seconds(params)
        assert estimate is not None, name
        began = cpu_seconds()
        for spec in kind.split(params):
            partial = kind.run(spec, lambda done, total: None)
            if kind.finishes_job(partial):
                break
        return estimate, cpu_seconds() - began


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "words.txt"
        text.write_text(generated_text(3_000_000))
        size = text.stat().st_size
        for name, params in CASES:
            estimate, spent = measure(name, params, text)
            shown = {k: v for k, v in params.items() if k not in INSIDE}
            where = " (inside the set)" if name == "mandelbrot" and "x_min" in params else ""
            rows.append(
                f"| `{name}` {shown}{where} | {estimate:.2f} | {spent:.2f} | {spent / estimate:.2f} |"
            )
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    write_section(
        "estimates",
        f"""Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} on {machine()}.

## Estimates against CPU time

Each kind's `estimate_seconds` (the quotas' count, jobs/kinds/*.py) beside the CPU seconds
its chunks took run one after another in one process (`tests/benchmarks/estimates.py`;
wordcount over {size:,} bytes of generated text). A ratio under 1 is an
upper bound at work (mandelbrot outside the set, a hash found early). Load average at the
end: {load}.

| kind and parameters | estimate (s) | CPU (s) | CPU / estimate |
|---|---|---|---|
"""
        + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
