import numpy as np
import pytest

from clipsteer.evaluate.groups import GroupReport, group_report, typographic_report


def test_group_report_per_group_worst_and_weighted() -> None:
    report = group_report(np.array([1, 0, 1, 1, 1, 0, 1, 1], bool), np.arange(8) % 4, ("a", "b", "c", "d"))
    assert report.groups == {"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0}
    assert report.wga == 0.0 and report.avg == pytest.approx(0.75)
    assert report.counts == {"a": 2, "b": 2, "c": 2, "d": 2}
    # Re-weighted to (unnormalised) training proportions: group b weighs 1 of 10.
    assert report.weighted_avg({"a": 3, "b": 1, "c": 3, "d": 3}) == pytest.approx(0.9)
    assert GroupReport.from_json(report.to_json()) == report
    with pytest.raises(ValueError, match="no examples"):
        group_report(np.ones(3, bool), np.zeros(3, int), ("a", "b"))
    with pytest.raises(ValueError, match="no weight"):
        report.weighted_avg({"a": 1.0})


def test_typographic_report() -> None:
    t = typographic_report(np.array([0, 1]), np.array([2, 1]), target=np.array([0, 1]), written=np.array([2, 2]),
                           blank_pred=np.array([0, 0]))
    assert t.clean_accuracy == 1.0 and t.attacked_accuracy == 0.5 and t.text_capture_rate == 0.5
    assert t.blank_accuracy == 0.5 and t.blank_capture_rate == 0.0
    assert typographic_report(np.array([0]), np.array([0]), np.array([0]), np.array([1])).blank_accuracy is None
    with pytest.raises(ValueError, match="wrong class word"):
        typographic_report(np.array([0]), np.array([0]), np.array([0]), np.array([0]))
