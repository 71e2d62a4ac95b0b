"""Compare MLflow runs: `python pipelines/compare.py logger.group=<sweep dir>`."""

from aevae.entry import main
from aevae.stages import compare

if __name__ == "__main__":
    main(compare.run, "compare")
