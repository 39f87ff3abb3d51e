"""A job kind from one typed function: `@kind(split=..., combine=...)`.

```text
from typing import Annotated
import random
from jobs.kinds.function import kind, Range, Help, seeded

@kind(label="Monte Carlo π", split=seeded(share="samples"), combine="sum")
def pi_darts(rng: random.Random,
             samples: Annotated[int, Range(1, 10**9), Help("Darts thrown.")] = 1_000_000) -> dict:
    inside = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1)
    return {"inside": inside, "samples": samples}
```

The function's parameters make the form (fields.py), the split strategy cuts the job into
chunks and says what the first parameter receives (splits.py), and a named reducer or a
function folds the partial results (reducers.py). docs/job-kinds.md has the tables.
"""

from __future__ import annotations

from jobs.kinds.function.build import PROGRESS, FunctionKind, function_kind, kind
from jobs.kinds.function.fields import Help, KindDefinitionError, Label, MaxLength, Range, Upload
from jobs.kinds.function.reducers import REDUCERS, ReduceError
from jobs.kinds.function.splits import (
    CHUNKS,
    SEED,
    Split,
    over_items,
    over_lines,
    over_range,
    seeded,
    seeded_stream,
)

__all__ = [
    "CHUNKS",
    "PROGRESS",
    "REDUCERS",
    "SEED",
    "FunctionKind",
    "Help",
    "KindDefinitionError",
    "Label",
    "MaxLength",
    "Range",
    "ReduceError",
    "Split",
    "Upload",
    "function_kind",
    "kind",
    "over_items",
    "over_lines",
    "over_range",
    "seeded",
    "seeded_stream",
]
