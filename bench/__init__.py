"""Benchmarks and machine checks, run as scripts (python bench/<name>.py)."""
