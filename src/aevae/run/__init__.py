"""A training run's machinery: callbacks, checkpoints and resuming, devices and precision,
progress, logs, rank and process ownership, sweep hooks."""
