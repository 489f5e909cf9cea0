"""rlpipe filters."""
