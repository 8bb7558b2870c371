"""Command-line tools: ``effopd-analyze`` (update geometry of checkpoints), ``effopd-report`` (run plots)."""
