"""Write the study report (Markdown + self-contained HTML) from the stages' outputs."""

from aevae.entry import main
from aevae.stages import report

if __name__ == "__main__":
    main(report.run, "report")
