"""Training: supervision formats, LoRA through TRL, micro-training (phase 1B), the matrix,
recovery."""
