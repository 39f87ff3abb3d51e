"""hash_search: proof of work; the first chunk to find a nonce ends the job."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from jobs.kinds import register
from jobs.kinds.base import JobKind, Params, Progress, ResultDisplay, Spec

MAX_DIFFICULTY = 7
MAX_CHUNKS = 1_000
MAX_PREFIX = 128
PROGRESS_EVERY = 20_000
# Search 16x the expected number of hashes: the chance of finding nothing is e^-16.
SPACE_FACTOR = 16
# CPU seconds per nonce tried, measured on the reference machine (docs/job-kinds.md,
# "Estimates").
SECONDS_PER_HASH = 4.7e-7


class HashSearchForm(forms.Form):
    # The parameter's name is fixed by the API; Django pops fields off the class, so it
    # does not clash with Form.prefix at run time.
    prefix = forms.CharField(  # type: ignore[assignment]
        max_length=MAX_PREFIX, initial="coreboard", strip=False
    )
    difficulty = forms.IntegerField(
        min_value=1,
        max_value=MAX_DIFFICULTY,
        initial=6,
        help_text="Leading zero hex digits wanted; each one multiplies the work by 16.",
    )
    chunks = forms.IntegerField(min_value=1, max_value=MAX_CHUNKS, initial=256)

    def clean_prefix(self) -> str:
        prefix: str = self.cleaned_data["prefix"]
        if not prefix.isprintable():
            raise ValidationError("Must contain printable characters only.")
        return prefix


def digest(prefix: str, nonce: int) -> str:
    return hashlib.sha256(f"{prefix}{nonce}".encode()).hexdigest()


@register
class HashSearch(JobKind):
    name = "hash_search"
    label = "Hash search (proof of work)"
    description = (
        "Finds a nonce such that sha256(prefix + nonce in decimal) starts with `difficulty` "
        "zero hex digits. The nonce space is split into chunks; the first find wins and the "
        "remaining chunks are cancelled."
    )
    form_class = HashSearchForm

    def estimate_seconds(self, params: Params) -> float:
        """At most: the whole nonce space searched (a find ends the job after about
        1/SPACE_FACTOR of it, on average)."""
        return float(SPACE_FACTOR * 16 ** params["difficulty"] * SECONDS_PER_HASH)

    def split(self, params: Params) -> Sequence[Spec]:
        space = SPACE_FACTOR * 16 ** params["difficulty"]
        chunks = params["chunks"]
        return [
            {
                "prefix": params["prefix"],
                "difficulty": params["difficulty"],
                "start": space * i // chunks,
                "stop": space * (i + 1) // chunks,
            }
            for i in range(chunks)
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, Any]:
        zeros = "0" * spec["difficulty"]
        base = hashlib.sha256(spec["prefix"].encode())
        start, stop = spec["start"], spec["stop"]
        for block in range(start, stop, PROGRESS_EVERY):
            for nonce in range(block, min(block + PROGRESS_EVERY, stop)):
                hasher = base.copy()
                hasher.update(str(nonce).encode())
                hexdigest = hasher.hexdigest()
                if hexdigest.startswith(zeros):
                    return {"nonce": nonce, "hash": hexdigest}
            progress(min(block + PROGRESS_EVERY, stop) - start, stop - start)
        return {"nonce": None, "hash": None}

    def finishes_job(self, partial: Any) -> bool:
        return partial.get("nonce") is not None

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, Any]:
        for partial in partials:
            if partial.get("nonce") is not None:
                return {"nonce": partial["nonce"], "hash": partial["hash"]}
        return {"nonce": None, "hash": None}

    def result_display(self, params: Params, result: Any) -> ResultDisplay:
        if result.get("nonce") is None:
            return ResultDisplay(figures=[("Nonce", "none found in the searched space")])
        return ResultDisplay(
            figures=[
                ("Nonce", str(result["nonce"])),
                ("Hashed text", f"{params['prefix']}{result['nonce']}"),
                ("SHA-256", result["hash"]),
            ]
        )
