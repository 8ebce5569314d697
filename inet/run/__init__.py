"""One run and its outputs: the runner, checkpoints, logs and dashboards, the trace, plots, safe file writes."""
