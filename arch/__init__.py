"""The architecture in pure Python: machine parameters (and, later, the ISA).

Everything else (RTL, golden models, compiler, testbenches) reads these
definitions; nothing here imports amaranth.
"""

from .config import PRESETS, SlicePosition, TspConfig, get_config

__all__ = ["PRESETS", "SlicePosition", "TspConfig", "get_config"]
