"""Evaluate trained checkpoints: `python pipelines/evaluate.py +models.ae=<ckpt> +models.vae=<ckpt>`."""

from aevae.entry import main
from aevae.stages import evaluate

if __name__ == "__main__":
    main(evaluate.run, "evaluate")
