"""Benchmarks of fer-edge: runtime throughput (`bench`) and model variants (`bench-accuracy`)."""
