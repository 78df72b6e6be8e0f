"""Phase 1 labels: uncertainty, leverage, the Contextual Patch Test, and quadrants."""
