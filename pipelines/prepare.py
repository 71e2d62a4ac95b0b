"""Write the prepared split file of a data set: `python pipelines/prepare.py data=mnist`."""

from aevae.entry import main
from aevae.stages import prepare

if __name__ == "__main__":
    main(prepare.run, "prepare")
