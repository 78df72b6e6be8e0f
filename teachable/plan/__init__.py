"""The planner: what a run costs before it runs (`python -m teachable plan`). `planner` counts each
stage's work from params alone and prices it on a device profile; `flops` is the cost model it
prices with, shared by `benchmarks/gpu.py`."""
