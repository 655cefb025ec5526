"""MEM slice: on-chip SRAM, two banks per tile, one byte-wide memory per lane.

Each superlane tile holds 16 lane memories of both banks' bytes (`lib.memory.Memory`
of ``2 * mem_depth`` bytes, one synchronous read port and one write port each); bank
= address // mem_depth, the address's top bit.  The reference reads one bank while
writing the other, so a read and a write in one cycle must be in different banks: one
1R1W memory per lane does that work, the rule is checked (BANK_CONFLICT), and the
simulator evaluates half as many memories.  Keeping the lanes separate is what makes
GATHER (every lane its own address: a per-lane table lookup) and SCATTER possible.

Timing (superlane 0; tile k does the same k cycles later), for an instruction
issued in cycle t:

- READ/GATHER: the SRAM read is in cycle t (address = addr, or addr + idx[l]
  with idx taken from a stream in cycle t); the data goes onto the result
  stream in cycle t + 1.  The lane memories are read (read enable) only in such a
  cycle or for the host; their read data holds otherwise.
- WRITE/SCATTER: the data (and idx) are taken from the streams in cycle t; the
  SRAM write is in cycle t + 1.
- READ ..., w=ADDR@sN.D (configs with ``mem_read_write``): a READ and a WRITE in one
  word, each with the timing above (the write's data rides the control's ``a`` stream,
  its address ``waddr``): the read port in cycle t, the write port in t + 1, so one
  queue keeps both ports busy every cycle.

A read and a write in the same cycle must be in different banks: a tile that
sees both in one bank raises BANK_CONFLICT; a GATHER/SCATTER lane address
beyond the slice raises ADDRESS_RANGE (the ICU already refused out-of-range
base addresses).  When the machine is not running the host reads and writes
whole vectors (all superlanes at once) through ``host``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from arch.config import TspConfig

from .slice import (
    ERROR_CODE_BITS,
    ErrorCode,
    SliceSignature,
    check_slice_config,
    is_opcode,
    merge_tiles,
    stream_case,
    stream_span,
    stream_write_enables,
    strided,
    view,
)
from .tile import SkewChain, TileStreamsSignature

_OPS = ("READ", "WRITE", "GATHER", "SCATTER")


class MemHostSignature(wiring.Signature):
    """Host access to a MEM slice (seen from the slice): one vector per cycle.

    ``re``/``we`` with ``addr``; read data is on ``rdata`` in the next cycle."""

    def __init__(self, cfg: TspConfig):
        super().__init__({
            "addr": In(cfg.mem_address_bits),
            "re": In(1),
            "we": In(1),
            "wdata": In(cfg.vector_length * 8),
            "rdata": Out(cfg.vector_length * 8),
        })


def mem_control_layout(cfg: TspConfig) -> data.StructLayout:
    """Decoded MEM instruction carried north through the tiles (with ``mem_read_write``
    also ``wr``/``waddr``: a READ that writes too, its data on stream ``a``)."""
    return data.StructLayout({
        "valid": 1,
        "op": 2,  # index into _OPS
        "addr": cfg.mem_address_bits,
        "a_s": cfg.stream_index_bits,  # stream read at issue: WRITE data / GATHER+SCATTER idx
        "a_d": 1,
        "b_s": cfg.stream_index_bits,  # READ/GATHER result stream, SCATTER data stream
        "b_d": 1,
        **({"wr": 1, "waddr": cfg.mem_address_bits} if cfg.mem_read_write else {}),
    })


class MemTile(wiring.Component):
    """One superlane tile of a MEM slice: 2 banks x 16 lane memories."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("MemTile", cfg)
        self.cfg = cfg
        super().__init__({
            "ctl": In(mem_control_layout(cfg)),
            "streams": Out(TileStreamsSignature(cfg)),
            "host_addr": In(cfg.mem_address_bits),
            "host_re": In(1),
            "host_we": In(1),
            "host_wdata": In(cfg.superlane_bits),
            "host_rdata": Out(cfg.superlane_bits),
            "error": Out(1),
            "error_code": Out(ERROR_CODE_BITS),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        L = cfg.lanes_per_superlane
        dbits = (cfg.mem_depth - 1).bit_length()  # the bank is address bit dbits
        abits = cfg.mem_address_bits
        c = self.ctl
        st = self.streams
        lane = data.ArrayLayout(8, L)

        ib = cfg.stream_index_bits
        # WRITE data or GATHER/SCATTER index; SCATTER data
        a_val = stream_case(m, st, ib, c.a_s, c.a_d, en=c.valid, name="a_val", shape=lane)
        b_val = stream_case(m, st, ib, c.b_s, c.b_d, en=c.valid, name="b_val", shape=lane)
        is_read = c.valid & ((c.op == _OPS.index("READ")) | (c.op == _OPS.index("GATHER")))
        is_write = c.valid & ((c.op == _OPS.index("WRITE")) | (c.op == _OPS.index("SCATTER")))
        per_lane = (c.op == _OPS.index("GATHER")) | (c.op == _OPS.index("SCATTER"))
        read_write = Const(0)  # a READ that also writes (READ ..., w=)
        if cfg.mem_read_write:
            read_write = c.valid & (c.op == _OPS.index("READ")) & c.wr
            is_write = is_write | read_write

        # stage 1 (cycle t+1): pending write and pending read result
        w_pend = Signal()
        w_addr = [Signal(abits, name=f"w_addr{i}", reset_less=True) for i in range(L)]
        w_data = Signal(lane, reset_less=True)
        r_pend = Signal()
        r_stream = Signal(cfg.stream_index_bits, reset_less=True)
        r_dir = Signal(reset_less=True)
        rdata = Signal(lane)
        m.d.sync += [w_pend.eq(is_write), r_pend.eq(is_read)]
        m.d.comb += self.busy.eq(w_pend | r_pend)  # the SRAM write / stream write of t+1

        # the banks the pending write writes, any lane: [0] bank 0, [1] bank 1 (loaded
        # with the write, so that the conflict check does not look at every lane's
        # pending address in every cycle)
        w_banks = Signal(2, name="w_banks")
        range_errs, read_bank_bits, wbanks = [], [], []
        for i in range(L):
            addr = Signal(abits + 1, name=f"addr{i}")
            with m.If(c.valid):  # (0 without an instruction: the stream muxes idle)
                m.d.comb += addr.eq(c.addr + Mux(per_lane, a_val[i], 0))
            range_errs.append(c.valid & per_lane & (addr >= cfg.mem_addresses))
            bank = addr[dbits]
            read_bank_bits.append((~bank, bank))
            waddr = Mux(read_write, c.waddr, addr) if cfg.mem_read_write else addr
            wbanks.append(waddr[dbits])
            with m.If(is_write):
                m.d.sync += [w_addr[i].eq(waddr),
                             w_data[i].eq(Mux(c.op == _OPS.index("SCATTER"), b_val[i],
                                              a_val[i]))]
            # both banks of the lane in one memory (the bank is the address's top bit):
            # a read and a write per cycle, in different banks (BANK_CONFLICT checks
            # that); one memory simulates at half the cost of two
            mem = memory.Memory(shape=8, depth=cfg.mem_addresses, init=[])
            m.submodules[f"lane{i}"] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            m.d.comb += [
                rp.en.eq(self.host_re | is_read),
                rp.addr.eq(Mux(self.host_re, self.host_addr, addr[:abits])),
                wp.addr.eq(Mux(self.host_we, self.host_addr, w_addr[i])),
                wp.data.eq(Mux(self.host_we, self.host_wdata[8 * i:8 * i + 8], w_data[i])),
                wp.en.eq(self.host_we | w_pend),
                rdata[i].eq(rp.data),
            ]
        with m.If(is_write):
            m.d.sync += w_banks.eq(Cat((~Cat(*wbanks)).any(), Cat(*wbanks).any()))
        with m.If(is_read):
            m.d.sync += [r_stream.eq(c.b_s), r_dir.eq(c.b_d)]
        m.d.comb += self.host_rdata.eq(rdata.as_value())

        # results of READ/GATHER go onto their stream in cycle t+1
        stream_write_enables(m, st, stream_span(r_pend, r_stream, 1, cfg.streams_per_direction),
                             r_dir)
        for s in range(cfg.streams_per_direction):
            m.d.comb += [st.e_out[s].eq(rdata.as_value()), st.w_out[s].eq(rdata.as_value())]
        range_err = Signal()
        conflict = Signal()
        m.d.comb += range_err.eq(Cat(*range_errs).any())
        # a READ's lanes share its address (and so its bank); only a GATHER's lanes differ
        c_bank = c.addr[dbits]
        reads = [is_read & Mux(per_lane, Cat(*(rb[b] for rb in read_bank_bits)).any(),
                               c_bank if b else ~c_bank) for b in range(2)]
        writes = [w_pend & w_banks[b] for b in range(2)]
        m.d.comb += conflict.eq((reads[0] & writes[0]) | (reads[1] & writes[1]))
        with m.If(range_err):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.ADDRESS_RANGE)]
        with m.Elif(conflict):
            m.d.comb += [self.error.eq(1), self.error_code.eq(ErrorCode.BANK_CONFLICT)]
        return m


class MemSlice(wiring.Component):
    """A MEM slice column: decode in superlane 0, skew the control north, one
    `MemTile` per superlane, and the host port."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("MemSlice", cfg)
        self.cfg = cfg
        members = dict(SliceSignature(cfg).members.items())
        members["host"] = Out(MemHostSignature(cfg))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S = cfg.superlanes
        word, off_a, off_b = self.issue.word, self.issue.off_a, self.issue.off_b
        ctl = Signal(mem_control_layout(cfg))
        m.d.comb += ctl.valid.eq(self.issue.valid)
        for i, mn in enumerate(_OPS):
            with m.If(is_opcode(word, "MEM", mn)):
                v = view(word, "MEM", mn)
                a, b = {"READ": (None, "out"), "WRITE": ("in", None),
                        "GATHER": ("idx", "out"), "SCATTER": ("idx", "in")}[mn]
                m.d.comb += [ctl.op.eq(i),
                             ctl.addr.eq(strided(word, "MEM", mn, "addr", off_a, off_b))]
                if mn == "READ" and cfg.mem_read_write:  # READ ..., w=ADDR@s: a write too
                    a = "in"
                    m.d.comb += [ctl.wr.eq(v.wr),
                                 ctl.waddr.eq(strided(word, "MEM", mn, "waddr", off_a, off_b))]
                for dst, src in (("a", a), ("b", b)):
                    if src:
                        m.d.comb += [getattr(ctl, f"{dst}_s").eq(getattr(v, f"{src}_s")),
                                     getattr(ctl, f"{dst}_d").eq(getattr(v, f"{src}_d"))]
        m.submodules.skew = skew = SkewChain(mem_control_layout(cfg), S)
        m.d.comb += skew.i.eq(ctl)
        tiles = []
        for k in range(S):
            tile = m.submodules[f"tile{k}"] = MemTile(cfg)
            wiring.connect(m, wiring.flipped(self.tiles[k]), tile.streams)
            lo, hi = k * cfg.superlane_bits, (k + 1) * cfg.superlane_bits
            m.d.comb += [
                tile.ctl.eq(skew.o[k]),
                tile.host_addr.eq(self.host.addr),
                tile.host_re.eq(self.host.re),
                tile.host_we.eq(self.host.we),
                tile.host_wdata.eq(self.host.wdata[lo:hi]),
                self.host.rdata[lo:hi].eq(tile.host_rdata),
            ]
            tiles.append(tile)
        merge_tiles(m, self, tiles, skew)
        return m
