"""jobs/scaling.py: speedup, efficiency, Amdahl's fit and Karp-Flatt on known curves."""

from __future__ import annotations

import dataclasses

import pytest

from jobs import protocol, scaling

pytestmark = pytest.mark.services


def _amdahl_walls(f: float, t1: float, levels: list[int]) -> dict[int, float | None]:
    return {p: t1 * (f + (1 - f) / p) for p in levels}


def test_levels_are_powers_of_two_and_the_maximum() -> None:
    assert scaling.scaling_levels(1) == [1]
    assert scaling.scaling_levels(2) == [1, 2]
    assert scaling.scaling_levels(6) == [1, 2, 4, 6]
    assert scaling.scaling_levels(16) == [1, 2, 4, 8, 16]
    assert scaling.scaling_levels(0) == []


def test_amdahl_curve_gives_exact_speedups_and_its_serial_fraction() -> None:
    analysis = scaling.scaling_analyse(_amdahl_walls(0.1, 20.0, [1, 2, 4, 8]))
    assert analysis.serial_fraction == pytest.approx(0.1)
    by_p = {point.parallelism: point for point in analysis.points}
    # S(2) = 1 / (0.1 + 0.45) = 1.8181…, S(8) = 1 / (0.1 + 0.1125) = 4.7058…
    assert by_p[1].speedup == pytest.approx(1.0)
    assert by_p[2].speedup == pytest.approx(1 / 0.55)
    assert by_p[8].speedup == pytest.approx(1 / 0.2125)
    assert by_p[8].efficiency == pytest.approx(1 / 0.2125 / 8)
    assert by_p[4].ideal_speedup == 4.0
    assert by_p[8].amdahl_speedup == pytest.approx(by_p[8].speedup)
    assert analysis.max_speedup == pytest.approx(10.0)


def test_karp_flatt_is_constant_for_amdahl_data() -> None:
    analysis = scaling.scaling_analyse(_amdahl_walls(0.05, 8.0, [1, 2, 4, 8, 16]))
    figures = [point.karp_flatt for point in analysis.points]
    assert figures[0] is None
    assert figures[1:] == pytest.approx([0.05] * 4)


def test_karp_flatt_by_hand() -> None:
    # S = 1.6 at p = 2: (1/1.6 - 1/2) / (1 - 1/2) = (0.625 - 0.5) / 0.5 = 0.25.
    assert scaling.karp_flatt(1.6, 2) == pytest.approx(0.25)
    assert scaling.karp_flatt(4.0, 4) == pytest.approx(0.0)
    assert scaling.karp_flatt(1.0, 1) is None


def test_fit_is_least_squares_and_clamped() -> None:
    # Two points with different implied fractions: the fit lies between them, weighted by
    # x² = (1 - 1/p)².
    f = scaling.amdahl_fit({1: 1.0, 2: 1 / (0.2 + 0.8 / 2), 4: 1 / (0.1 + 0.9 / 4)})
    x2, x4 = 0.5, 0.75
    expected = (x2 * x2 * 0.2 + x4 * x4 * 0.1) / (x2 * x2 + x4 * x4)
    assert f == pytest.approx(expected)
    assert scaling.amdahl_fit({1: 1.0, 2: 2.5}) == 0.0  # superlinear
    assert scaling.amdahl_fit({1: 1.0, 2: 0.5}) == 1.0  # slower than one process
    assert scaling.amdahl_fit({1: 1.0}) is None


def test_missing_times_keep_their_place_without_figures() -> None:
    analysis = scaling.scaling_analyse({1: 10.0, 2: None, 4: 3.0})
    by_p = {point.parallelism: point for point in analysis.points}
    assert by_p[2].speedup is None
    assert by_p[2].karp_flatt is None
    assert by_p[4].speedup == pytest.approx(10 / 3)
    no_base = scaling.scaling_analyse({1: None, 2: 4.0})
    assert no_base.serial_fraction is None
    assert all(point.speedup is None for point in no_base.points)


def test_a_study_run_carries_every_figure_of_a_point() -> None:
    figures = {field.name for field in dataclasses.fields(scaling.ScalingPoint)}
    assert protocol.field_names(protocol.StudyRunState) == figures | {"job", "status"}
    point = scaling.scaling_analyse({1: 10.0, 2: 6.0}).points[1]
    assert set(protocol.study_run_state(point, None)) == set(protocol.StudyRunState.__annotations__)
