"""PSI and KS on binned counts, exact values."""

import math

import pytest

from monitoring.drift import PSI_FLOOR, feature_drift, ks, psi


def test_identical_distributions_have_no_distance():
    assert psi([10, 20, 70], [1, 2, 7]) == 0.0
    assert ks([10, 20, 70], [1, 2, 7]) == 0.0


def test_psi_and_ks_of_a_shift():
    reference, live = [50, 50], [20, 80]
    assert psi(reference, live) == pytest.approx((0.2 - 0.5) * math.log(0.2 / 0.5) + (0.8 - 0.5) * math.log(0.8 / 0.5))
    assert ks(reference, live) == pytest.approx(0.3)


def test_an_empty_bin_on_one_side_is_floored_not_infinite():
    assert psi([100, 0], [0, 100]) == pytest.approx(2 * (1 - PSI_FLOOR) * math.log(1 / PSI_FLOOR))
    assert ks([100, 0], [0, 100]) == 1.0


def test_mismatched_or_empty_counts_are_refused():
    with pytest.raises(ValueError, match="2 reference bins but 3 live ones"):
        psi([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="no observations"):
        ks([0, 0], [1, 1])


def test_feature_drift_skips_features_without_live_rows():
    by_feature, largest_psi, largest_ks = feature_drift(
        ["a", "b", "c"], [[50, 50], [50, 50], [50, 50]], [[50, 50], [20, 80], [0, 0]])
    assert list(by_feature) == ["a", "b"]
    assert by_feature["a"] == 0.0
    assert largest_psi == by_feature["b"] == round(psi([50, 50], [20, 80]), 6)
    assert largest_ks == 0.3
