"""What a training shows while it runs (`trainer.progress`) and the precision it computes in
(`trainer.precision`): lines when stdout is not a terminal, quiet with `none`, fp32 unless the
CPU computes bf16 natively."""

import os
import re
import subprocess
import sys
import time

import lightning as L
import pytest

from aevae.run.devices import native_bf16, resolve_precision
from aevae.run.progress import ProgressLines, announce
from aevae.stages.train import build_trainer
from aevae.stages.train import run as train
from conftest import REPO_ROOT

SMALL = ["net.hidden_dims=[32]", "model.latent_dim=4", "data.batch_size=64", "trainer.log_every_n_steps=1"]
# `train/vae epoch 12/80 val/loss 109.3 eta 1m40s`; within an epoch `... epoch 3/80 step 40/105 train/loss_step 110.2 eta 2m05s`
LINE = re.compile(r"^(?P<name>\S+) epoch (?P<epoch>\d+)/(?P<epochs>\d+)(?: step (?P<step>\d+)/(?P<steps>\d+))? ?(?:(?P<metric>(?:val|train)/\S+) (?P<value>[-+.\deE]+) )?eta (?P<eta>\d+s|\d+m\d\ds|\d+h\d\dm)$")


def progress_lines(text: str) -> list[re.Match]:
    return [match for row in text.splitlines() if (match := LINE.match(row))]


def test_a_training_whose_output_is_not_a_terminal_prints_lines(tmp_path):
    """As under `dvc repro` (stdout a pipe): one line per epoch (the first and the last always,
    the others at most one every 15 s), in the documented format, and no bar."""
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", *SMALL, "trainer.max_epochs=3", "logger=none", f"output_dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/h"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = progress_lines(result.stdout)
    assert [(m["name"], m["epoch"], m["epochs"], m["metric"]) for m in lines][0] == ("train/vae", "1", "3", "val/loss")
    assert lines[-1]["epoch"] == "3" and lines[-1]["eta"] == "0s"
    assert "\r" not in result.stdout and "\x1b[" not in result.stdout  # no live bar's redraws or colours


def test_a_training_on_a_terminal_shows_a_live_bar(tmp_path):
    """stdout a pseudo-terminal: Lightning's rich bar (epoch, step, time left, loss), redrawn in place."""
    master, terminal = os.openpty()
    args = [sys.executable, "pipelines/train.py", *SMALL, "trainer.max_epochs=2", "logger=none", f"output_dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/h"]
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=terminal, stderr=subprocess.PIPE, env=os.environ | {"TERM": "xterm", "COLUMNS": "120"})
    os.close(terminal)
    shown = b""
    while chunk := read_some(master):
        shown += chunk
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    text = shown.decode(errors="replace")
    assert "Epoch 1/1" in text and "18/18" in text and "\x1b[" in text and "val/loss" in text and "train/loss_step" in text
    assert not progress_lines(text.replace("\r", "\n"))


def read_some(fd: int) -> bytes:
    """What a pseudo-terminal's writer has written since (empty once it has closed)."""
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end is closed
        return b""


def test_progress_none_is_quiet(make_config, capsys):
    train(make_config([*SMALL, "trainer.max_epochs=2", "trainer.progress=none", "logger=none"]))
    printed = capsys.readouterr()
    assert not progress_lines(printed.out) and " epoch " not in printed.out + printed.err


def test_a_long_epoch_prints_lines_within_it(make_config, capsys):
    """The line's clock, not the epoch, decides: with a 0 s interval every step prints one, so
    an epoch longer than the interval still shows a line at least every interval plus a step."""
    cfg = make_config([*SMALL, "trainer.max_epochs=2", "trainer.progress=none", "logger=none"])
    from aevae.config import validate
    from aevae.data import InMemoryDataModule, load_or_prepare
    from aevae.models import build_model

    splits = load_or_prepare(cfg.data)
    typed = validate(cfg)
    model = build_model(typed.model, typed.net, splits.image_shape)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=1, callbacks=[ProgressLines("train/tiny", interval_s=0.0)])
    trainer.fit(model, datamodule=InMemoryDataModule(splits, cfg.data, seed=cfg.seed))
    lines = progress_lines(capsys.readouterr().out)
    steps = [m for m in lines if m["step"]]
    per_epoch = trainer.num_training_batches
    assert len(steps) == 2 * per_epoch and steps[0]["step"] == "1" and steps[0]["steps"] == str(per_epoch)
    assert [m["epoch"] for m in lines if not m["step"]] == ["1", "2"]
    assert {m["metric"] for m in steps} == {"train/loss_step"} and {m["metric"] for m in lines if not m["step"]} == {"val/loss"}


@pytest.mark.fast
def test_native_bf16_reads_the_cpu_flags(tmp_path):
    without, avx512_bf16, amx, arm = (tmp_path / name for name in ("without", "avx512_bf16", "amx", "arm"))
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n")
    avx512_bf16.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    amx.write_text("flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n")
    arm.write_text("Features\t: fp asimd sve bf16 i8mm\n")
    assert [native_bf16(path) for path in (without, avx512_bf16, amx, arm, tmp_path / "missing")] == [False, True, True, True, False]


@pytest.mark.fast
def test_auto_precision_is_fp32_without_native_bf16():
    assert resolve_precision("32-true", "cpu") == "32-true" and resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native_bf16() else "32-true")


def test_precision_reaches_the_trainer(make_config, tmp_path):
    """`trainer.precision` is what the Trainer computes in (`auto`: resolved for this CPU), and
    bf16 autocast changes the numbers."""
    for precision, expected in (("auto", resolve_precision("auto", "cpu")), ("bf16-mixed", "bf16-mixed")):
        cfg = make_config([*SMALL, f"trainer.precision={precision}"])
        assert build_trainer(cfg.trainer, tmp_path, False, [], "train/vae").precision == expected
    metrics = {}
    for precision in ("32-true", "bf16-mixed"):
        cfg = make_config([*SMALL, "trainer.max_epochs=1", "trainer.progress=none", "logger=none", f"trainer.precision={precision}"])
        cfg.output_dir = str(tmp_path / precision)
        metrics[precision] = train(cfg)
    fp32, bf16 = metrics["32-true"], metrics["bf16-mixed"]
    assert fp32["val/loss"] != bf16["val/loss"] and abs(fp32["val/loss"] - bf16["val/loss"]) < 0.05 * fp32["val/loss"]



@pytest.mark.fast
def test_announce_counts_the_models_a_stage_trains_in_turn(capsys):
    started = time.monotonic() - 20.0  # two of five done in 20 s
    announce("lines", "anomaly/ae class", 3, 5, started)
    announce("none", "anomaly/ae class", 4, 5, started)
    announce("lines", "anomaly/ae class", 1, 5, time.monotonic())
    assert capsys.readouterr().out.splitlines() == ["anomaly/ae class 3/5 eta 30s", "anomaly/ae class 1/5 eta ?"]


def test_a_bad_precision_in_params_yaml_is_refused_in_one_line(tmp_path):
    params = (REPO_ROOT / "params.yaml").read_text().replace("train: {}", "train: {precision: fp8}")
    assert "precision: fp8" in params
    (tmp_path / "params.yaml").write_text(params)
    result = subprocess.run(
        [sys.executable, "pipelines/configure.py", f"params={tmp_path / 'params.yaml'}", "models_dir=models", f"output_dir={tmp_path / 'overrides'}", f"hydra.run.dir={tmp_path / 'h'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == ["error: params.yaml train.precision: unknown precision 'fp8'; expected one of auto, 32-true, bf16-mixed, bf16-true, 16-mixed, 16-true, 64-true"]
    assert not (tmp_path / "overrides").exists()
