"""Benchmark harness and the reproduction of the HQ-SAM paper's Table 10."""
