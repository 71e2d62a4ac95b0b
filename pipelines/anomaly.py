"""One-class anomaly detection: `python pipelines/anomaly.py model=vae normal_classes=[0,1]`."""

from aevae.entry import main
from aevae.stages import anomaly

if __name__ == "__main__":
    main(anomaly.run, "anomaly")
