"""cocotb testbenches (run on Verilator through `sim.run.run_cocotb`).

Each testbench is split as in cocotb's matrix_multiplier example: a driver
(stimulus onto the DUT's ports), a monitor (observations off them), a model
(pure Python/numpy prediction) and a scoreboard (comparison).
"""
