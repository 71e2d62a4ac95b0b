"""Train an AE or VAE: `python pipelines/train.py model=vae net=conv trainer.max_epochs=5`."""

from aevae.entry import main
from aevae.stages import train

if __name__ == "__main__":
    main(train.run, "train")
