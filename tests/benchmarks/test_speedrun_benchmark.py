"""`benchmarks/speedrun.py --quick`: both recipes race on the same data and windows, on two clocks; the sums add up."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two processes that each import Lightning and train twice 30 steps
def test_quick_race_scores_both_recipes_on_the_same_windows(tiny_overrides, tmp_path):
    # The toy play and a tiny model for both sides; 30 steps each, scored every 10.
    shared = [o for o in tiny_overrides if o.split("=")[0].split(".")[0] in ("data", "paths", "model")]
    out = tmp_path / "race"
    command = [sys.executable, str(ROOT / "benchmarks" / "speedrun.py"), "--quick", "--eval-every", "10",
               "--out", str(out), "--data", *shared]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    classic = json.loads((out / "classic.json").read_text())
    default = json.loads((out / "default.json").read_text())
    assert [r["step"] for r in classic["rows"]] == [r["step"] for r in default["rows"]] == [10, 20, 30]
    # The target defaults to the classic's final val loss, which the classic reaches at its last step.
    assert summary["target"] == classic["rows"][-1]["val_loss"]
    assert summary["roles"]["classic"]["steps_to_target"] == 30
    for rows in (classic["rows"], default["rows"]):
        assert rows[-1]["val_loss"] < rows[0]["val_loss"]  # both learn
        assert all(a["seconds"] < b["seconds"] for a, b in zip(rows, rows[1:]))
        assert all(0 < a["cpu_seconds"] < b["cpu_seconds"] for a, b in zip(rows, rows[1:]))
    # Both clocks give a ratio; the side that finished first kept busy until the race ended it, so the race
    # returned (a side left running would hang this test until its timeout).
    roles = summary["roles"]
    assert roles["default"]["steps_to_target"] is not None  # Muon + ReLU² pass the classic's 30-step loss
    assert summary["time_ratio"] == roles["default"]["seconds_to_target"] / roles["classic"]["seconds_to_target"]
    assert summary["cpu_time_ratio"] == pytest.approx(
        roles["default"]["cpu_seconds_to_target"] / roles["classic"]["cpu_seconds_to_target"]
    )
    assert classic["recipe"]["overrides"][0] == "experiment=shakespeare_char_cpu"
    assert (out / "speedrun.png").stat().st_size > 0
    assert "time to target, default / classic" in proc.stdout
