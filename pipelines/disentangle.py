"""Disentanglement scores, traversals and report: `python pipelines/disentangle.py +models.vae=<best.ckpt> data.prepared=<sprites.pt>`."""

from aevae.entry import main
from aevae.stages import disentangle

if __name__ == "__main__":
    main(disentangle.run, "disentangle")
