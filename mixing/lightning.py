"""Online data mixing in a Lightning ``Trainer``: a DataModule and its callback.

    data = MixingDataModule(store, lambda store: MixtureDataset(store, OnlineDataMixer.from_store(store, grad_accum=K),
                                                                seq_len, batch_size), num_workers=2, log="mixing.jsonl")
    trainer = L.Trainer(accumulate_grad_batches=K, callbacks=[data.callback], use_distributed_sampler=False, ...)
    # in training_step, after computing one loss per sequence:  self.trainer.datamodule.add(per_seq, batch)
    trainer.fit(model, datamodule=data, ckpt_path=checkpoint_or_None)

The mixture is built in ``setup()``, where Lightning has initialised torch.distributed, so
the mixer takes this process's rank; there, too, every rank switches to rank 0's store
build (``same_build_across_ranks``). ``train_dataloader()`` is ``MixtureDataset.dataloader()``
(one whole micro-batch per item; ``use_distributed_sampler=False`` keeps Lightning from
re-creating it). The callback calls ``mixer.update()`` once per optimizer step, in
``on_before_optimizer_step`` (after the backward passes of all accumulated micro-batches).
The mixture's state goes into every checkpoint through the DataModule's ``state_dict`` and
is restored by ``load_state_dict`` after ``setup()``: the state is rank-independent, so
rank 0's checkpoint resumes every rank exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import lightning as L

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.errors import MixingError
from shammie.mixing.log import MixLog
from shammie.mixing.losses import DomainLossAccumulator
from shammie.mixing.store import same_build_across_ranks


class MixingDataModule(L.LightningDataModule):
    """Builds the MixtureDataset in setup(), serves its loader, keeps its state in checkpoints.
    make_mixture: store -> MixtureDataset, called once per process after torch.distributed is up,
    with `store` (a ShardStore) switched to rank 0's build."""

    def __init__(self, store, make_mixture: Callable[[Any], MixtureDataset], num_workers: int = 2,
                 log: str | None = None):
        super().__init__()
        self.store, self.make_mixture, self.num_workers, self.log_path = store, make_mixture, num_workers, log
        self.mixture: MixtureDataset | None = None
        self.log: MixLog | None = None
        self.losses = DomainLossAccumulator()
        self.micro_batches = 0
        self.callback = MixingCallback(self)

    def setup(self, stage: str) -> None:
        if self.mixture is None:
            self.store = same_build_across_ranks(self.store)
            self.mixture = self.make_mixture(self.store)
        if self.log_path and self.log is None and self.trainer is not None and self.trainer.global_rank == 0:
            self.log = MixLog(self.log_path)

    def train_dataloader(self):
        return self.mixture.dataloader(num_workers=self.num_workers)

    def add(self, per_sequence: Any, batch: Any) -> None:
        """Add a training micro-batch's per-sequence losses (detached inside)."""
        self.losses.add(per_sequence, batch["domain"], step=batch["step"])
        self.micro_batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {"mixture": self.mixture.state_dict()} if self.mixture is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "mixture" not in state:
            raise MixingError("the checkpoint holds no mixture state (saved without MixingDataModule)")
        self.mixture.load_state_dict(state["mixture"])


class MixingCallback(L.Callback):
    """One mixer.update() per optimizer step; the log written by rank 0 and closed at the end."""

    def __init__(self, data: MixingDataModule):
        self.data = data

    def on_train_start(self, trainer, pl_module) -> None:
        mixer = self.data.mixture.mixer
        if trainer.global_step != mixer.step:
            raise MixingError(f"the Trainer resumes at step {trainer.global_step} but the mixture's stream is at "
                              f"step {mixer.step}: pass datamodule=MixingDataModule(...) to fit() so the checkpoint "
                              "restores it")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        record = self.data.mixture.mixer.update(self.data.losses)      # its means and step; resets it
        if self.data.log is not None:
            self.data.log.write(record)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.data.log is not None:
            self.data.log.flush()

    def on_train_end(self, trainer, pl_module) -> None:
        if self.data.log is not None:
            self.data.log.close()
