"""cocotb testbenches of a system: several chips on C2C links (`hdl.system`)."""
