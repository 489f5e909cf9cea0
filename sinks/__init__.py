"""rlpipe sinks."""
