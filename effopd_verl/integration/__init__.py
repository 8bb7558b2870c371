"""Everything that touches verl (pinned to verl 0.9.1): launch, trainer hook, worker RPCs, scoring, state."""
