"""A deterministic synthetic Suqian for demos, tests and benchmarks."""
