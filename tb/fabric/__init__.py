"""Testbench of the stream fabric with a probe slice at every position."""
