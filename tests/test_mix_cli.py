"""`shammie mix report`: reads MixLog JSONL/CSV, writes PNGs, CSV and a summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shammie.mixing.mixer import MixLog, OnlineDataMixer, read_log, write_csv


def _log(path, steps=60):
    m = OnlineDataMixer(["a", "b", "c"], lag=0, seed=1)
    log = MixLog(str(path), flush_every=7)
    for t in range(steps):
        d = m.sample()[0]
        log.write(m.update({d: {"a": 1.0, "b": 3.0, "c": 2.0}[d]}))
        if t % 20 == 19:
            log.write_eval(t + 1, {"a": 1.0, "b": 2.5 - t / 100, "c": 2.0, "mean": 1.8 - t / 200})
    log.close()
    return m


def test_log_round_trip_keeps_every_step_and_the_last_duplicate(tmp_path):
    path = tmp_path / "odm.jsonl"
    m = _log(path)
    recs = read_log(str(path))
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 61))
    assert train[-1]["weights"] == pytest.approx(m.last_record["weights"])
    with open(path, "a") as f:                    # a resumed run re-logs step 60: the later line wins
        f.write(json.dumps({"step": 60, "kind": "train", "weights": {"a": 1.0}, "loss": {"a": 9.0}}) + "\n")
    last = [r for r in read_log(str(path)) if r["step"] == 60 and r["kind"] == "train"]
    assert len(last) == 1 and last[0]["loss"] == {"a": 9.0}
    write_csv(recs, str(tmp_path / "x.csv"))
    again = read_log(str(tmp_path / "x.csv"))
    assert [(r["step"], r["kind"]) for r in again] == [(r["step"], r["kind"]) for r in recs]
    assert again[10]["weights"] == pytest.approx(recs[10]["weights"])


def test_report_cli_writes_plots(tmp_path):
    _log(tmp_path / "odm.jsonl")
    _log(tmp_path / "uniform.jsonl", steps=40)
    out = tmp_path / "report"
    from shammie.jobs.cli import main
    assert main(["mix", "report", str(tmp_path / "odm.jsonl"), str(tmp_path / "uniform.jsonl"),
                 "--output", str(out)]) == 0
    for name in ("odm.weights.png", "odm.loss.png", "odm.csv", "uniform.weights.png", "compare.eval.png"):
        data = (out / name).read_bytes()
        assert len(data) > 1000
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["odm"]["steps"] == 60 and summary["uniform"]["steps"] == 40
    assert summary["odm"]["final_eval"]["step"] == 60


def test_report_cli_errors_are_clear(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shammie.jobs.cli", "mix", "report",
                           str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr
