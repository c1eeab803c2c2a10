"""The trainer examples (plain loop, HF Trainer, Lightning) on a tiny store, on CPU, with
gradient accumulation 2 and 2 DataLoader workers: what they log, not just that they exit 0."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shammie.mixing.store_testing import write_token_store

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DOMAINS = ("easy", "mid", "noise")
STEPS, ACCUM, BATCH, SEQ = 6, 2, 4, 32


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> str:
    """Three domains of different difficulty: a repeated 4-token motif, 57 symbols, 387 symbols."""
    rng = np.random.default_rng(0)
    docs = {"easy": [np.tile(rng.integers(3, 20, 4), 20).astype(np.uint16) for _ in range(60)],
            "mid": [rng.integers(3, 60, 80).astype(np.uint16) for _ in range(60)],
            "noise": [rng.integers(3, 390, 80).astype(np.uint16) for _ in range(60)]}
    root = tmp_path_factory.mktemp("examples") / "store"
    write_token_store(str(root), docs, seq_len=SEQ + 1)
    return str(root)


def _run(script: str, store: str, log: Path, extra: list[str], expect: int = 0) -> dict | None:
    cmd = [sys.executable, str(EXAMPLES / script), "--store", store, "--max-steps", str(STEPS),
           "--grad-accum", str(ACCUM), "--log", str(log), "--workers", "2", "--batch-size", str(BATCH),
           "--seq-len", str(SEQ), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(log.parent), env=env)
    assert proc.returncode == expect, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) if expect == 0 else None


EXAMPLE_RUNS = {
    "plain": ("train_tiny_gpt.py", ["--d-model", "32", "--layers", "1", "--out", "plain-out"]),
    "hf": ("hf_trainer.py", ["--width", "32", "--layers", "1", "--out", "hf-out"]),
    "lightning": ("lightning_trainer.py", ["--width", "32", "--layers", "1"]),
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_RUNS))
def test_example_updates_the_mixer_once_per_optimizer_step(tmp_path, tiny_store, name):
    script, extra = EXAMPLE_RUNS[name]
    log = tmp_path / f"{name}.jsonl"
    summary = _run(script, tiny_store, log, extra)
    assert summary["optimizer_steps"] == STEPS
    if "micro_batches" in summary:
        assert summary["micro_batches"] == STEPS * ACCUM
    # Raw lines, not read_log (which keeps the last of repeated steps): exactly one update
    # record per optimizer step, in order.
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))
    for r in train:
        assert set(r["weights"]) == set(DOMAINS)
        assert math.isclose(sum(r["weights"].values()), 1.0, abs_tol=1e-9)
        assert r["loss"] and set(r["loss"]) <= set(DOMAINS)
        # untrained on a 400-piece vocabulary: about ln(400) = 6 nats, finite and positive
        assert all(math.isfinite(v) and 0 < v < 20 for v in r["loss"].values())
        # each update covers both micro-batches of its step: sequences are counted cumulatively
        assert sum(r["sequences"].values()) == r["step"] * ACCUM * BATCH


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hf_trainer_keeps_domain_and_step_away_from_the_model(tmp_path, tiny_store):
    import torch
    from transformers import TrainingArguments

    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.hf import MixingTrainer
    from shammie.mixing.mixer import OnlineDataMixer
    from shammie.mixing.store import open_store

    hf = _load_example("hf_trainer")
    store = open_store(tiny_store)

    class Recorder(torch.nn.Module):
        """Passes calls to a GPT-2 that accepts **kwargs (so it would silently ignore extra keys)."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.seen = inner, []

        def forward(self, **kwargs):
            self.seen.append(sorted(kwargs))
            return self.inner(**kwargs)

    model = Recorder(hf.tiny_gpt2(store.vocab_size, SEQ, 32, 1))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, gradient_accumulation_steps=ACCUM,
                             dataloader_num_workers=0, save_strategy="no", report_to=[], use_cpu=True,
                             remove_unused_columns=False, disable_tqdm=True)
    mixer = OnlineDataMixer.from_store(store, seed=0, grad_accum=ACCUM)
    trainer = MixingTrainer(model=model, args=args, mixture=MixtureDataset(store, mixer, SEQ + 1, BATCH),
                            log=str(tmp_path / "log.jsonl"))
    trainer.train()
    assert model.seen and all(keys == ["input_ids"] for keys in model.seen)
    assert len(model.seen) == 2 * ACCUM and mixer.step == 2
    # the log was closed at the end of training: both records are on disk
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]


# Runs an example's main() in this process, then reports the threads still running: the ones
# torch.distributed leaves behind race the interpreter's exit (a rank aborted with "terminate
# called without an active exception" about one run in 75). Lightning re-runs sys.argv for its
# second rank, so that rank runs through this wrapper too.
THREADS_LEFT = """
import glob, importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("example", sys.argv[1])
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)
code = example.main(sys.argv[2:])
names = sorted(open(task + "/comm").read().strip() for task in glob.glob("/proc/self/task/*"))
os.write(sys.stdout.fileno(), (json.dumps({"threads_left": names}) + "\\n").encode())
sys.exit(code)
"""

DDP_RUNS = {
    # torchrun needs `--` before the script: its own parser would take `--log` for an
    # abbreviation of its --log-dir/--logs-specs options.
    "hf": (lambda script: [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
                           "--", script], "hf_trainer.py", ["--out", "hf-out"]),
    "lightning": (lambda script: [sys.executable, script], "lightning_trainer.py",
                  ["--devices", "2", "--strategy", "ddp"]),
}


def _two_ranks(tmp_path, tiny_store, name: str, log: Path, extra: list[str], expect: int = 0) -> tuple:
    """Runs an example on 2 ranks (gloo) through the threads wrapper: ({rank: summary}, threads left, proc)."""
    launcher, script, ddp = DDP_RUNS[name]
    wrapper = tmp_path / "threads_left.py"
    wrapper.write_text(THREADS_LEFT)
    cmd = [*launcher(str(wrapper)), str(EXAMPLES / script), "--store", tiny_store, "--grad-accum", str(ACCUM),
           "--log", str(log), "--workers", "2", "--batch-size", str(BATCH), "--seq-len", str(SEQ),
           "--width", "32", "--layers", "1", *ddp, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(tmp_path), env=env)
    if expect == 0:
        assert proc.returncode == 0, proc.stderr[-4000:]
    else:
        assert proc.returncode != 0, proc.stdout[-2000:]
    ranks = {r["rank"]: r for r in (json.loads(line) for line in proc.stdout.splitlines()
                                    if line.startswith('{"rank"'))}
    left = [json.loads(line)["threads_left"] for line in proc.stdout.splitlines()
            if line.startswith('{"threads_left"')]
    return ranks, left, proc


def _check_two_ranks(ranks: dict, left: list, log: Path, steps: int, proc) -> None:
    assert sorted(ranks) == [0, 1] and all(r["world_size"] == 2 for r in ranks.values())
    assert all(r["optimizer_steps"] == r["mixer_step"] == steps and r["micro_batches"] == steps * ACCUM
               for r in ranks.values())
    # Per-rank data: each rank drew and read its own micro-batches (no rank-0 dispatch) ...
    assert ranks[0]["data_sha256"] != ranks[1]["data_sha256"]
    # ... and the all-reduced update leaves both ranks with the same mixture and parameters.
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]
    assert math.isclose(sum(ranks[0]["weights"].values()), 1.0, abs_tol=1e-9)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert [r["step"] for r in records if r.get("kind") == "train"] == list(range(1, steps + 1))
    # Each rank ended its process group and gloo's threads stopped before the interpreter exits.
    assert len(left) == 2, proc.stdout[-2000:]
    assert not [n for names in left for n in names if "gloo" in n], left


def test_hf_example_on_two_ranks_draws_per_rank_data_with_identical_weights(tmp_path, tiny_store):
    log = tmp_path / "hf-ddp.jsonl"
    ranks, left, proc = _two_ranks(tmp_path, tiny_store, "hf", log, ["--max-steps", "8"])
    _check_two_ranks(ranks, left, log, 8, proc)


def test_lightning_on_two_ranks_killed_and_resumed_from_rank_0s_checkpoint_is_exact(tmp_path, tiny_store):
    """2 ranks on gloo, 2 workers, grad_accum 2: the uninterrupted run (per-rank data, identical
    weights, no gloo thread left), a run SIGKILLed after step 6, and its resume from the step-4
    checkpoint, which Lightning writes from rank 0 only: both ranks continue their own streams
    exactly (the mixer's state is rank-independent), so the final parameters, the weights and
    steps 5-8 of the log equal the uninterrupted run's."""
    full_log, log = tmp_path / "full.jsonl", tmp_path / "crash.jsonl"
    common = ["--max-steps", "8", "--save-steps", "4"]
    ranks, left, proc = _two_ranks(tmp_path, tiny_store, "lightning", full_log, [*common, "--out", "full"])
    _check_two_ranks(ranks, left, full_log, 8, proc)
    _two_ranks(tmp_path, tiny_store, "lightning", log, [*common, "--out", "crash", "--kill-at-step", "6"], expect=-9)
    checkpoint = tmp_path / "crash" / "step-step=4.ckpt"
    assert checkpoint.exists() and not (tmp_path / "crash" / "step-step=8.ckpt").exists()
    again, left, proc = _two_ranks(tmp_path, tiny_store, "lightning", log,
                                   [*common, "--out", "crash", "--resume", str(checkpoint)])
    assert sorted(again) == [0, 1] and not [n for names in left for n in names if "gloo" in n]
    for r in (0, 1):
        assert again[r]["mixer_step"] == again[r]["optimizer_steps"] == 8
        assert again[r]["micro_batches"] == 4 * ACCUM
        assert again[r]["param_sha256"] == ranks[r]["param_sha256"]
        assert again[r]["weights"] == ranks[r]["weights"]
    assert again[0]["data_sha256"] != again[1]["data_sha256"]
    _same_steps(_records(full_log), _records(log), after=4)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _same_steps(full: list[dict], again: list[dict], after: int) -> None:
    """The resumed run's records from step `after` + 1 on equal the uninterrupted run's."""
    later = {r["step"]: r for r in again}                 # the resumed run's lines come last
    ref = [r for r in full if r["step"] > after]
    assert sorted(later)[-len(ref):] == [r["step"] for r in ref]
    for a in ref:
        b = later[a["step"]]
        assert a["weights"] == b["weights"] and a["sequences"] == b["sequences"]
        assert a["loss"].keys() == b["loss"].keys()
        assert all(math.isclose(a["loss"][d], b["loss"][d], rel_tol=1e-6) for d in a["loss"])


def test_hf_trainer_killed_and_resumed_is_exact(tmp_path, tiny_store):
    """Uninterrupted 8 steps vs. a run SIGKILLed after step 6 and resumed from its step-4
    checkpoint: steps 5-8 draw the same data, give the same weights and losses, and the final
    parameters are bit for bit the same (2 workers, grad_accum 2, the library's MixingTrainer)."""
    common = ["--width", "32", "--layers", "1", "--save-steps", "4", "--max-steps", "8"]
    full = _run("hf_trainer.py", tiny_store, tmp_path / "full.jsonl", [*common, "--out", "full"])
    assert full["mixer_step"] == 8
    checkpoint = tmp_path / "crash" / "checkpoint-4"
    log = tmp_path / "crash.jsonl"
    killed = _run("hf_trainer.py", tiny_store, log, [*common, "--out", "crash", "--kill-at-step", "6"], expect=-9)
    assert killed is None and (checkpoint / "mixture.json").exists()
    assert not (tmp_path / "crash" / "checkpoint-8").exists()
    again = _run("hf_trainer.py", tiny_store, log, [*common, "--out", "crash", "--resume", str(checkpoint)])
    assert again["mixer_step"] == 8 and again["micro_batches"] == 4 * ACCUM
    assert again["param_sha256"] == full["param_sha256"] and again["weights"] == full["weights"]
    _same_steps(_records(tmp_path / "full.jsonl"), _records(log), after=4)


def _hf_in_process(tiny_store, out: Path, *, max_steps: int, save_steps: int = 0, resume: Path | None = None,
                   ignore_data_skip: bool = False, workers: int = 2, load_mixture: bool = True) -> list[dict]:
    """The library's MixingTrainer with explicit TrainingArguments; returns the log records."""
    from transformers import TrainingArguments, set_seed

    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.hf import MixingTrainer
    from shammie.mixing.mixer import OnlineDataMixer
    from shammie.mixing.store import open_store

    hf = _load_example("hf_trainer")
    set_seed(0)
    args = TrainingArguments(output_dir=str(out), max_steps=max_steps, gradient_accumulation_steps=ACCUM,
                             dataloader_num_workers=workers, learning_rate=1e-3, lr_scheduler_type="constant",
                             save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
                             report_to=[], use_cpu=True, remove_unused_columns=False, disable_tqdm=True, seed=0,
                             ignore_data_skip=ignore_data_skip)
    store = open_store(tiny_store)
    mixer = OnlineDataMixer.from_store(store, seed=0, grad_accum=ACCUM)
    model = hf.tiny_gpt2(store.vocab_size, SEQ, 32, 1)
    log_path = out.parent / f"{out.name}.jsonl"
    trainer = MixingTrainer(model=model, args=args, mixture=MixtureDataset(store, mixer, SEQ + 1, BATCH),
                            log=str(log_path))
    if resume is not None and not load_mixture:
        from transformers import Trainer
        Trainer.train(trainer, resume_from_checkpoint=str(resume))      # skips MixingTrainer's state loading
    else:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    assert trainer.state.global_step == mixer.step == max_steps
    return _records(log_path)


@pytest.mark.parametrize("ignore_data_skip", [False, True])
def test_hf_trainer_resume_with_or_without_data_skip_is_quick_and_exact(tmp_path, tiny_store, ignore_data_skip):
    """HF Trainer's default resume (ignore_data_skip=False) fast-forwards a loader that Accelerate
    rebuilds around the dataset (skip_first_batches), so the mixer's own loader check never sees
    it. It used to block a worker for the 60 s wait and then fail; now the skipped micro-batches
    are placeholders that cost nothing and the stream resumes exactly at the checkpoint's step."""
    import time

    # 6 steps to skip: more than the lag (4), so the skipped batches need updates that never come
    full = _hf_in_process(tiny_store, tmp_path / "full", max_steps=9, save_steps=6)
    started = time.monotonic()
    again = _hf_in_process(tiny_store, tmp_path / "resumed", max_steps=9, resume=tmp_path / "full" / "checkpoint-6",
                           ignore_data_skip=ignore_data_skip)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"resume took {elapsed:.0f} s"
    assert [r["step"] for r in again] == [7, 8, 9]
    for a, b in zip([r for r in full if r["step"] > 6], again):
        assert a["weights"] == b["weights"] and a["sequences"] == b["sequences"]
        assert a["loss"].keys() == b["loss"].keys()
        assert all(math.isclose(a["loss"][d], b["loss"][d], rel_tol=1e-6) for d in a["loss"])


def test_hf_trainer_resume_without_the_mixture_state_is_refused_at_once(tmp_path, tiny_store):
    """The Trainer would restart the stream at step 1 (or skip into a stream it never drew):
    MixingCallback.on_train_begin compares the Trainer's step with the mixer's before any batch."""
    import time

    from shammie.mixing.mixer import MixingError

    _hf_in_process(tiny_store, tmp_path / "full", max_steps=2, save_steps=2, workers=0)
    began = time.monotonic()
    with pytest.raises(MixingError, match=r"resumes at step 2 but the mixture's stream is at step 0.*load"):
        _hf_in_process(tiny_store, tmp_path / "resumed", max_steps=4, resume=tmp_path / "full" / "checkpoint-2",
                       load_mixture=False)
    assert time.monotonic() - began < 20
