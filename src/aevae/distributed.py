"""Multi-process (DDP) runs: a spawn-based strategy for Hydra jobs, and anomaly scores gathered
from every rank in sample order.

Launch mode. Lightning's default `ddp` starts the other ranks by re-running `sys.argv`; inside a
Hydra multirun that re-runs the whole sweep once per rank. The strategy registered here,
`SPAWN_STRATEGY`, starts the ranks as child processes of the process that calls `trainer.fit`
(torch.multiprocessing spawn), so a single run, a multirun job and a test all launch DDP the same
way, and the output directory and the MLflow run are decided once, in that process, before any rank
starts. Lightning's spawn launcher sends back rank 0's weights, `callback_metrics` and best
checkpoint path; this one also sends back rank 0's callback states (best score, epoch history,
gathered scores) and, after fitting, its fit-loop progress (epoch, step), so the code after
`trainer.fit` / `trainer.predict` sees the trainer that rank 0 ended with.

Import this module before building a Trainer that names `SPAWN_STRATEGY`: importing registers it.
"""

import io
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

SPAWN_STRATEGY = "ddp_spawn_stateful"
_STATE_KEY = "aevae_state_bytes"


class _StatefulSpawnLauncher(_MultiProcessingLauncher):
    """Lightning's spawn launcher, also restoring rank 0's callback and fit-loop state in the caller."""

    def get_extra_results(self, trainer: L.Trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        state = {"callbacks": {callback.state_key: callback.state_dict() for callback in trainer.callbacks}}
        if trainer.state.fn == TrainerFn.FITTING:
            state["fit_loop"] = trainer.fit_loop.state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)  # bytes, not tensors: no shared memory outlives the worker
        extra[_STATE_KEY] = buffer.getvalue()
        return extra

    def update_main_process_results(self, trainer: L.Trainer, extra: dict[str, Any]) -> None:
        super().update_main_process_results(trainer, extra)
        state = torch.load(io.BytesIO(extra[_STATE_KEY]), weights_only=True)
        for callback in trainer.callbacks:
            if callback.state_key in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][callback.state_key])
        if "fit_loop" in state:
            trainer.fit_loop.load_state_dict(state["fit_loop"])


class SpawnDDPStrategy(DDPStrategy):
    """DDP whose ranks are spawned by the calling process and whose rank-0 state comes back to it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(start_method="spawn", **kwargs)

    def _configure_launcher(self) -> None:
        self._launcher = _StatefulSpawnLauncher(self, start_method=self._start_method)


if SPAWN_STRATEGY not in StrategyRegistry:
    StrategyRegistry.register(
        SPAWN_STRATEGY,
        SpawnDDPStrategy,
        description="DDP with ranks spawned in-process; rank 0's callback and loop state restored in the caller",
    )


class ScoreGatherer(BasePredictionWriter):
    """Collects the `{"index", "score"}` predictions of every rank into one tensor in sample order.

    Each sample is predicted by exactly one rank (the evaluation batches shard without padding), so
    the gathered indices must be exactly 0..n-1; anything else is an error, not a silent mean.
    """

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")
        self.scores: Tensor | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        index = torch.cat([batch["index"] for batch in predictions]).cpu()
        score = torch.cat([batch["score"] for batch in predictions]).float().cpu()
        if trainer.world_size > 1:
            shards: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(shards, (index, score))  # per-rank counts may differ
            index = torch.cat([shard[0] for shard in shards])
            score = torch.cat([shard[1] for shard in shards])
        order = torch.argsort(index)
        if not torch.equal(index[order], torch.arange(len(index))):
            raise RuntimeError(f"gathered {len(index)} predictions whose sample indices are not 0..{len(index) - 1} exactly once")
        self.scores = score[order]

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scores = state_dict["scores"]


def predict_scores(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule) -> Tensor:
    """Per-sample anomaly scores of the test split, in the split's order, on one or many ranks.

    Runs `trainer.predict` (the model's `predict_step` returns `{"index", "score"}`); under DDP every
    rank scores its own shard and the shards are all-gathered and ordered by sample index. Every rank
    (and, with `SPAWN_STRATEGY`, the calling process) gets the full tensor, on the CPU.
    """
    gatherer = ScoreGatherer()
    trainer.callbacks.append(gatherer)
    try:
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    finally:
        trainer.callbacks.remove(gatherer)
    if gatherer.scores is None:
        raise RuntimeError(f"no scores came back from the ranks: with {type(trainer.strategy).__name__}, use strategy {SPAWN_STRATEGY!r} to spawn ranks")
    return gatherer.scores
