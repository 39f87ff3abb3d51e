"""A job kind with a result file that only some test workers have
(COREBOARD_JOB_KINDS=tests.kinds_picture): a Mandelbrot under another name, so a test
decides which worker writes its result file. Importing this module registers the kind.
"""

from __future__ import annotations

from jobs.kinds import register
from jobs.kinds.mandelbrot import Mandelbrot

NAME = "picture"


@register
class Picture(Mandelbrot):
    name = NAME
    label = "Picture"
    description = "A Mandelbrot picture as a result file (tests only)."
