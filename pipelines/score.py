"""Apply a trained model to new images: `python pipelines/score.py model_uri=runs:/<run id>/model images=new.npy`."""

from aevae.entry import main
from aevae.stages import score

if __name__ == "__main__":
    main(score.run, "score")
