"""mandelbrot: render the Mandelbrot set in bands of rows; the picture fills in live."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from PIL import Image

from jobs.kinds import register
from jobs.kinds.base import File, JobKind, Params, Progress, Spec

MAX_SIDE = 4096
MAX_PIXELS = 4096 * 2048
MAX_ITER = 10_000
MAX_CHUNKS = 4096
INSIDE = 0
# CPU seconds, measured on the reference machine (docs/job-kinds.md, "Estimates"): one
# step of the escape loop, and a pixel's own work beside its steps.
SECONDS_PER_ITERATION = 9.8e-8
SECONDS_PER_PIXEL = 1.7e-7


def palette() -> list[int]:
    """Index 0 is black (inside the set); 1..255 run from deep blue through white to orange."""
    colours = [0, 0, 0]
    for i in range(1, 256):
        t = (i - 1) / 254
        colours += [
            int(255 * min(1.0, 9 * (1 - t) * t**3 * 4)),
            int(255 * min(1.0, 15 * (1 - t) ** 2 * t**2 * 2)),
            int(255 * min(1.0, 8.5 * (1 - t) ** 3 * t * 2 + 0.15)),
        ]
    return colours


PALETTE = palette()


class MandelbrotForm(forms.Form):
    width = forms.IntegerField(min_value=1, max_value=MAX_SIDE, initial=640)
    height = forms.IntegerField(min_value=1, max_value=MAX_SIDE, initial=480)
    max_iter = forms.IntegerField(min_value=1, max_value=MAX_ITER, initial=300)
    x_min = forms.FloatField(min_value=-4, max_value=4, initial=-2.2)
    x_max = forms.FloatField(min_value=-4, max_value=4, initial=0.8)
    y_min = forms.FloatField(min_value=-4, max_value=4, initial=-1.0)
    y_max = forms.FloatField(min_value=-4, max_value=4, initial=1.0)
    chunks = forms.IntegerField(
        min_value=1, max_value=MAX_CHUNKS, initial=16, help_text="Bands of rows."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        errors: dict[str, str] = {}
        if None not in (data.get("x_min"), data.get("x_max")) and data["x_max"] <= data["x_min"]:
            errors["x_max"] = "Must be greater than X min."
        if None not in (data.get("y_min"), data.get("y_max")) and data["y_max"] <= data["y_min"]:
            errors["y_max"] = "Must be greater than Y min."
        width, height, chunks = data.get("width"), data.get("height"), data.get("chunks")
        if width and height and width * height > MAX_PIXELS:
            errors["height"] = f"Width × Height must be at most {MAX_PIXELS:,} pixels."
        if height and chunks and chunks > height:
            errors["chunks"] = f"Must be at most Height ({height} rows)."
        if errors:
            raise ValidationError(errors)
        return data


def escape_row(spec: Spec, y: int) -> bytes:
    """Palette indices of one row: 0 inside the set, else brighter the later it escapes."""
    width, max_iter = spec["width"], spec["max_iter"]
    x_min, x_step = spec["x_min"], (spec["x_max"] - spec["x_min"]) / width
    ci = spec["y_max"] - (y + 0.5) * (spec["y_max"] - spec["y_min"]) / spec["height"]
    row = bytearray(width)
    for i in range(width):
        cr = x_min + (i + 0.5) * x_step
        zr = zi = 0.0
        n = 0
        while n < max_iter and zr * zr + zi * zi <= 4.0:
            zr, zi = zr * zr - zi * zi + cr, 2 * zr * zi + ci
            n += 1
        row[i] = INSIDE if n == max_iter else 1 + int(254 * math.sqrt(n / max_iter))
    return bytes(row)


def to_png(width: int, height: int, pixels: bytes) -> bytes:
    image = Image.frombytes("P", (width, height), pixels)
    image.putpalette(PALETTE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


@register
class Mandelbrot(JobKind):
    name = "mandelbrot"
    label = "Mandelbrot set"
    description = "Renders the Mandelbrot set as a PNG, band by band; watch it fill in."
    form_class = MandelbrotForm
    preview_type = "image/png"

    def estimate_seconds(self, params: Params) -> float:
        """At most: every pixel inside the set runs all `max_iter` steps (what a band
        costs depends on where the set is, which only running it tells)."""
        pixels = params["width"] * params["height"]
        return float(pixels * (SECONDS_PER_PIXEL + params["max_iter"] * SECONDS_PER_ITERATION))

    def split(self, params: Params) -> Sequence[Spec]:
        height, chunks = params["height"], params["chunks"]
        common = {k: params[k] for k in ("width", "height", "max_iter")} | {
            k: params[k] for k in ("x_min", "x_max", "y_min", "y_max")
        }
        return [
            {**common, "y0": height * i // chunks, "y1": height * (i + 1) // chunks}
            for i in range(chunks)
        ]

    def run(self, spec: Spec, progress: Progress) -> dict[str, Any]:
        y0, y1 = spec["y0"], spec["y1"]
        rows = []
        for y in range(y0, y1):
            rows.append(escape_row(spec, y))
            progress(y + 1 - y0, y1 - y0)
        pixels = b"".join(rows)
        return {
            "y0": y0,
            "y1": y1,
            "inside": pixels.count(INSIDE),
            "pixels": base64.b64encode(pixels).decode(),
        }

    def combine(self, params: Params, partials: Sequence[Any]) -> dict[str, Any]:
        pixels = params["width"] * params["height"]
        return {
            "width": params["width"],
            "height": params["height"],
            "inside_share": sum(p["inside"] for p in partials) / pixels,
        }

    def preview(self, params: Params, spec: Spec, partial: Any) -> File:
        band = base64.b64decode(partial["pixels"])
        png = to_png(params["width"], partial["y1"] - partial["y0"], band)
        return File(name=f"band-{partial['y0']}.png", content_type="image/png", data=png)

    def result_file(self, params: Params, partials: Sequence[Any]) -> File:
        pixels = b"".join(base64.b64decode(p["pixels"]) for p in partials)
        png = to_png(params["width"], params["height"], pixels)
        return File(name="mandelbrot.png", content_type="image/png", data=png)
