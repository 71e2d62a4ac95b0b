"""Check params.yaml and write every stage's overrides: `python pipelines/configure.py` (DVC's first stage)."""

from aevae.entry import main
from aevae.stages import configure

if __name__ == "__main__":
    main(configure.run, "configure")
