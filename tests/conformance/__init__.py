"""The conformance suite: one contract, checked for every node and every local sink.

For any stream of records and any fault, each value written is stored exactly once as
written (under the sink's documented normalisation) or counted with its reason and warned
once; written = stored + counted; `failures()` names every sink that lost anything; fused,
unfused, row and batch paths agree. See README.md here for the protocol a sink joins by.
"""
