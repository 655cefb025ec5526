"""Testbench of the whole chip through its host interface, against golden/machine.py."""
