"""rlpipe's benchmarks: runnable scripts (`python benchmarks/throughput.py`), not tests."""
