"""How a function kind cuts its input into chunks, and what its first parameter receives.

- `over_range("n", start="start")`: the range [start, n) in `chunks` contiguous pieces; the
  function gets a `range`.
- `over_items("words")`: the list parameter `words` (the function's first) in `chunks`
  contiguous slices; the function gets its slice.
- `over_lines("file")`: an uploaded file cut into `chunks` byte ranges; the function gets
  the lines that start in its range (`list[str]`, without their line ends), found on the
  worker (jobs.kinds.records), so splitting never reads the file.
- `seeded(share="samples")`: `chunks` independent repetitions, each with its own
  `random.Random` from (kind, seed, chunk index); `share` divides that integer parameter
  among them.

A chunk spec carries only its own part (bounds, its items, a byte range, a seed and share),
never the whole input; the job's other parameters ride along for the function.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, get_args, get_origin

from django import forms
from django.core.files.storage import default_storage

from jobs.kinds.base import ListField, Params, UploadField
from jobs.kinds.function.fields import KindDefinitionError, ParamField, Upload, param_field
from jobs.kinds.records import Records, byte_ranges

CHUNKS = "chunks"
SEED = "seed"
# The `chunks` field a strategy adds when the function does not declare one.
DEFAULT_CHUNKS = 16
MAX_CHUNKS = 10_000
MAX_SEED = 2**63 - 1
# Keys of a chunk spec beside a strategy's own: a share parameter may not take these names.
RESERVED = frozenset({"index", "params", SEED})
# over_lines' records: lines, each ending just after its b"\n" (a CR before it is dropped).
LINES = Records(b"\n")


def seeded_stream(kind_name: str, seed: int, index: int) -> random.Random:
    """An independent random stream per (kind, seed, chunk index), the same in every process."""
    digest = hashlib.sha256(f"{kind_name}:{seed}:{index}".encode()).digest()
    # A simulation wants reproducible pseudo-randomness, not cryptographic randomness.
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311


# The strategies are classes named like functions: a kind reads `split=over_range("n")`.
class Split:
    """A split strategy: checks the function's parameters, then cuts a job into chunk parts."""

    #: What the first parameter receives, as it may be annotated (checked when defined).
    first_type: ClassVar[Any] = None

    def own(self) -> tuple[str, ...]:
        """Parameters whose per-chunk value is in the chunk's part (a share, the seed)."""
        return ()

    def prepare(
        self, where: str, first: inspect.Parameter, first_hint: Any, fields: dict[str, ParamField]
    ) -> dict[str, ParamField]:
        """The form's fields, in order: the function's, then what the strategy adds."""
        _check_first(where, first, first_hint, self.first_type)
        return _with_chunks(where, fields)

    def errors(self, data: Mapping[str, Any], fields: Mapping[str, ParamField]) -> dict[str, str]:
        """Checks across fields (after each field's own), by field."""
        return {}

    def parts(self, params: Params) -> list[dict[str, Any]]:
        raise NotImplementedError

    def chunk(self, kind_name: str, spec: Mapping[str, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class over_range(Split):
    """The integers [start, n) cut into `chunks` contiguous ranges (start is 0 without one).

    `max_size` bounds n - start (each bound alone has its own Range).
    """

    n: str
    start: str | None = None
    max_size: int | None = None
    first_type: ClassVar[Any] = range

    def prepare(
        self, where: str, first: inspect.Parameter, first_hint: Any, fields: dict[str, ParamField]
    ) -> dict[str, ParamField]:
        for name in filter(None, (self.n, self.start)):
            _integer(where, fields, name, "over_range")
        return super().prepare(where, first, first_hint, fields)

    def errors(self, data: Mapping[str, Any], fields: Mapping[str, ParamField]) -> dict[str, str]:
        # A bound that failed its own field's checks is missing here: nothing to compare.
        n, start = data.get(self.n), data.get(self.start) if self.start else 0
        if n is None or start is None:
            return {}
        after = f"{fields[self.start].label} ({start})" if self.start else "0"
        if n <= start:
            return {self.n: f"Must be greater than {after}."}
        if self.max_size is not None and n - start > self.max_size:
            if not self.start:
                return {self.n: f"Must be at most {self.max_size:,}."}
            span = f"{fields[self.n].label} minus {fields[self.start].label}"
            return {self.n: f"{span} must be at most {self.max_size:,}."}
        chunks = data.get(CHUNKS)
        if chunks is not None and chunks > n - start:
            return {CHUNKS: f"Must be at most the size of the range ({n - start})."}
        return {}

    def parts(self, params: Params) -> list[dict[str, Any]]:
        start, stop, chunks = (
            params[self.start] if self.start else 0,
            params[self.n],
            params[CHUNKS],
        )
        bounds = [start + (stop - start) * i // chunks for i in range(chunks + 1)]
        return [{"start": bounds[i], "stop": bounds[i + 1]} for i in range(chunks)]

    def chunk(self, kind_name: str, spec: Mapping[str, Any]) -> range:
        return range(spec["start"], spec["stop"])


@dataclass(frozen=True)
class over_items(Split):
    """The list parameter `name`, which is the function's first parameter, in `chunks`
    contiguous slices: the form's field comes from its annotation (`list[str]`, `list[int]`,
    `list[float]`), and each call receives one slice."""

    name: str

    def prepare(
        self, where: str, first: inspect.Parameter, first_hint: Any, fields: dict[str, ParamField]
    ) -> dict[str, ParamField]:
        if first.name != self.name:
            raise KindDefinitionError(
                f"{where}(): over_items({self.name!r}) cuts the function's first parameter; "
                f"name it `{self.name}` and annotate it as a list (it receives each chunk's items)."
            )
        source = param_field(f"{where}({first.name})", first, first_hint)
        if not isinstance(source.field, ListField):
            raise KindDefinitionError(
                f"{where}(): over_items({self.name!r}) needs `{self.name}` annotated "
                "list[str], list[int] or list[float]."
            )
        source.passed = False
        return _with_chunks(where, {self.name: source, **fields})

    def errors(self, data: Mapping[str, Any], fields: Mapping[str, ParamField]) -> dict[str, str]:
        items, chunks = data.get(self.name), data.get(CHUNKS)
        if items is None or chunks is None or chunks <= len(items):
            return {}
        label = fields[self.name].label
        return {CHUNKS: f"Must be at most the number of {label} ({len(items)})."}

    def parts(self, params: Params) -> list[dict[str, Any]]:
        items: Sequence[Any] = params[self.name]
        size, chunks = len(items), params[CHUNKS]
        return [
            {"items": list(items[size * i // chunks : size * (i + 1) // chunks])}
            for i in range(chunks)
        ]

    def chunk(self, kind_name: str, spec: Mapping[str, Any]) -> list[Any]:
        items: list[Any] = spec["items"]
        return items


@dataclass(frozen=True)
class over_lines(Split):
    """The lines of the uploaded file `name`, cut at line ends into `chunks` byte ranges.

    Declare `name: Upload` to label it or to receive the file too; otherwise the form gets
    an upload field of that name for you. The file is cut into byte ranges by arithmetic
    (at most one per byte) and each call receives the lines that START in its range, as
    text (UTF-8, line ends removed): it reads past its range to finish its last line, and
    receives no lines when a line longer than the range covers it.
    """

    name: str
    first_type: ClassVar[Any] = list[str]

    def prepare(
        self, where: str, first: inspect.Parameter, first_hint: Any, fields: dict[str, ParamField]
    ) -> dict[str, ParamField]:
        declared = fields.get(self.name)
        if declared is None:
            fields = {**fields, self.name: ParamField(self.name, UploadField(), passed=False)}
        elif not isinstance(declared.field, UploadField):
            raise KindDefinitionError(
                f"{where}(): over_lines({self.name!r}) reads an upload; annotate "
                f"`{self.name}` as Upload or leave it out."
            )
        return super().prepare(where, first, first_hint, fields)

    def parts(self, params: Params) -> list[dict[str, Any]]:
        # Arithmetic only: the web process never reads the file (each chunk finds its lines).
        upload = params[self.name]
        file = Upload(**upload) if isinstance(upload, dict) else upload
        return [
            {"storage_name": file.storage_name, "start": start, "stop": stop}
            for start, stop in byte_ranges(file.size, params[CHUNKS])
        ]

    def chunk(self, kind_name: str, spec: Mapping[str, Any]) -> list[str]:
        with default_storage.open(spec["storage_name"], "rb") as handle:
            first, end = LINES.owned_range(handle, spec["start"], spec["stop"])
            handle.seek(first)
            data: bytes = handle.read(end - first)
        text = data.decode("utf-8")
        return (
            [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
            if text
            else []
        )


@dataclass(frozen=True)
class seeded(Split):
    """`chunks` independent repetitions, each with its own reproducible `random.Random`.

    The stream of chunk i comes from (kind name, `seed`, i), so the same seed gives the same
    result on any machine. With `share`, that integer parameter is divided among the chunks
    and each call receives its share.
    """

    share: str | None = None
    first_type: ClassVar[Any] = random.Random

    def own(self) -> tuple[str, ...]:
        return (SEED, self.share) if self.share else (SEED,)

    def prepare(
        self, where: str, first: inspect.Parameter, first_hint: Any, fields: dict[str, ParamField]
    ) -> dict[str, ParamField]:
        if self.share is not None:
            if self.share in RESERVED:
                raise KindDefinitionError(
                    f"{where}(): seeded(share=...) cannot share {self.share!r}."
                )
            _integer(where, fields, self.share, "seeded(share=...)")
        fields = super().prepare(where, first, first_hint, fields)
        if SEED in fields:
            _integer(where, fields, SEED, "seeded()")
            return fields
        seed = forms.IntegerField(
            min_value=0, max_value=MAX_SEED, initial=1, help_text="Same seed, same result."
        )
        return {**fields, SEED: ParamField(SEED, seed, passed=False)}

    def errors(self, data: Mapping[str, Any], fields: Mapping[str, ParamField]) -> dict[str, str]:
        if self.share is None:
            return {}
        total, chunks = data.get(self.share), data.get(CHUNKS)
        if total is None or chunks is None or chunks <= total:
            return {}
        return {CHUNKS: f"Must be at most {fields[self.share].label} ({total})."}

    def parts(self, params: Params) -> list[dict[str, Any]]:
        chunks, seed = params[CHUNKS], params[SEED]
        if self.share is None:
            return [{SEED: seed} for _ in range(chunks)]
        total = params[self.share]
        return [
            {SEED: seed, self.share: total * (i + 1) // chunks - total * i // chunks}
            for i in range(chunks)
        ]

    def chunk(self, kind_name: str, spec: Mapping[str, Any]) -> random.Random:
        return seeded_stream(kind_name, spec[SEED], spec["index"])


def _with_chunks(where: str, fields: dict[str, ParamField]) -> dict[str, ParamField]:
    if CHUNKS in fields:
        _integer(where, fields, CHUNKS, "the chunk count")
        return fields
    chunks = forms.IntegerField(min_value=1, max_value=MAX_CHUNKS, initial=DEFAULT_CHUNKS)
    return {**fields, CHUNKS: ParamField(CHUNKS, chunks, passed=False)}


def _integer(where: str, fields: Mapping[str, ParamField], name: str, role: str) -> None:
    declared = fields.get(name)
    if (
        declared is None
        or not isinstance(declared.field, forms.IntegerField)
        or isinstance(declared.field, forms.FloatField | UploadField)
    ):
        raise KindDefinitionError(
            f"{where}(): {role} needs an int parameter `{name}` (with its Range and default)."
        )


def _check_first(where: str, first: inspect.Parameter, hint: Any, expected: Any) -> None:
    if hint is inspect.Parameter.empty or expected is None:
        return
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if hint == expected or hint is Any or (hint is list and get_origin(expected) is list):
        return
    if isinstance(hint, type) and isinstance(expected, type) and issubclass(expected, hint):
        return
    raise KindDefinitionError(
        f"{where}(): the first parameter `{first.name}` receives the chunk, a "
        f"{getattr(expected, '__name__', None) or expected}, but is annotated {hint!r}."
    )
