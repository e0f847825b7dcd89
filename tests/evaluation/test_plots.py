"""The comparison plot of one metric over several runs, and its smoothing."""

from minigpt.evaluation.plots import moving_average, plot_runs_metric


def test_moving_average_uses_the_points_seen_so_far():
    # window 2: [1], [1, 3], [3, 5], [5, 7] → 1, 2, 4, 6
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_runs_metric_plot_draws_the_runs_that_logged_the_metric(tmp_path):
    key = "train/response_length_wrong"
    runs = {"grpo": {key: [(0, 3.0), (1, 3.5)]}, "dr_grpo": {key: [(0, 3.0), (1, 2.9)]}, "other": {"x": [(0, 1.0)]}}
    out = plot_runs_metric(runs, key, tmp_path / "length.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_runs_metric({"other": {"x": [(0, 1.0)]}}, key, tmp_path / "none.png") is None
