"""Semi-supervised probe of frozen latents: `python pipelines/probe.py models={ae:<ckpt>} repeats=3`."""

from aevae.entry import main
from aevae.stages import probe

if __name__ == "__main__":
    main(probe.run, "probe")
