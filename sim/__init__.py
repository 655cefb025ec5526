"""Verilog generation, Verilator builds (cached) and simulation entry points."""
