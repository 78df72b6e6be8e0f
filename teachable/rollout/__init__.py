"""Episodes: the batched engine (from reset or restored snapshots) and phase 0's snapshots."""
