"""The reference table: `python pipelines/reference_report.py recipes=[<dir>,...]`."""

from aevae.entry import main
from aevae.stages import reference_report

if __name__ == "__main__":
    main(reference_report.run, "reference_report")
