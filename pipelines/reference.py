"""One reference recipe: `python pipelines/reference.py experiment=ref_iwae_vae budget=smoke`."""

from aevae.entry import main
from aevae.stages import reference

if __name__ == "__main__":
    main(reference.run, "reference")
