"""Train the digit classifier that judges generated images: `python pipelines/classifier.py data=mnist`."""

from aevae.entry import main
from aevae.stages import classifier

if __name__ == "__main__":
    main(classifier.run, "classifier")
