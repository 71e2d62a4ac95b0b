"""The wall time of each stage of a `dvc repro`, read from the MLflow runs the stages recorded
(one fact in one place: each run's start and end). `make repro` prints the table when the
pipeline ends: `python -m aevae.records.timings` (the store: $MLFLOW_TRACKING_URI, else `mlflow.db`)."""

from pathlib import Path
from typing import Any

from aevae.records import tracking
from aevae.run.logs import duration
from aevae.workspace import project_root


def stage_times(client: Any, group: str) -> tuple[list[tuple[str, float]], float]:
    """(name, seconds) of the latest finished or failed run of each stage nested directly under
    `group`'s parent run, in the order they started, and the parent's span in seconds (first
    start to last end); ([], 0.0) when the group has no parent run."""
    query = f"tags.`{tracking.GROUP_TAG}` = '{group}' and tags.`{tracking.ROLE_TAG}` = 'parent'"
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    parents = client.search_runs(experiments, filter_string=query, max_results=1) if experiments else []
    if not parents:
        return [], 0.0
    parent = parents[0]
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent.info.run_id}'", max_results=1000)
    latest: dict[str, Any] = {}
    for run in sorted((run for run in children if run.info.end_time), key=lambda run: run.info.start_time):
        latest[run.info.run_name] = run
    rows = sorted(latest.values(), key=lambda run: run.info.start_time)
    return [(run.info.run_name, (run.info.end_time - run.info.start_time) / 1000) for run in rows], (parent.info.end_time - parent.info.start_time) / 1000


def table(group: str, rows: list[tuple[str, float]], span_s: float) -> str:
    """The stage wall-time table as text."""
    if not rows:
        return f"stage wall times: no runs recorded for {group}"
    width = max(len(name) for name, _ in rows)
    lines = [f"stage wall times ({group}; each stage's MLflow run, its process start-up not included):"]
    lines += [f"  {name:<{width}}  {duration(seconds):>7}" for name, seconds in rows]
    lines.append(f"  {'first start to last end':<{width}}  {duration(span_s):>7}")
    return "\n".join(lines)


def main() -> None:
    root = project_root()
    group = tracking.repro_group(Path("params.yaml"))
    uri = tracking.tracking_uri(None, root)
    if uri.startswith(tracking.SQLITE) and not Path(uri.removeprefix(tracking.SQLITE)).exists():
        print(table(group, [], 0.0))
        return
    print(table(group, *stage_times(tracking.store_client(uri), group)))


if __name__ == "__main__":
    main()
