"""The C2C slice: chip-to-chip links at one end of the slice row (C2C_W, C2C_E).

Hardware, per superlane tile and per link (``c2c_links`` links; ``b`` =
``c2c_bytes_per_cycle``, ``B = 16 / b`` beats per byte plane; a message is 1, 2
or 4 planes, its type's bytes):

* Transmitter: a 4 x 16-byte shift register and a beat counter.  SEND takes the
  tile's 16 bytes of each plane (streams ``in..in+w-1``) at issue; the next
  ``wB`` cycles put ``b`` bytes each on the tile's lane group of the link
  (``tx_valid``, ``tx_data``), plane 0's lowest lanes first; ``tx_last`` marks a
  message's last beat.
* Receiver: a deserialiser (each beat to its byte offset, a beat counter) that
  assembles a message and, on its last beat, pushes it with its plane count into
  the receive buffer, a ``c2c_buffer``-deep FIFO (`lib.memory.Memory`, one
  64-byte word per message); RECV pops the oldest message and writes its planes
  onto streams ``out..`` one cycle later.
* The wire between two chips is `C2cLink` (``c2c_latency - 1`` registers), in
  the system top (`hdl.system`).

Timing (superlane 0; tile ``k`` does the same ``k`` cycles later, on both chips,
so the skew cancels): SEND of ``w`` planes issued in ``t``: beats in ``t+1 ..
t+wB`` on the wire, seen by the far end's deserialiser ``c2c_latency - 1``
cycles later; the last beat is pushed at the end of ``t + c2c_latency + wB - 1``,
so a RECV issued in ``t + c2c_latency + wB`` or later takes it.  RECV issued in
``t``: FIFO read in ``t``, the planes on their streams in ``t + 1``.

Faults, in tile 0 (the others repeat its timing): ``LINK_BUSY`` (a SEND while
the link still has beats of the previous message to send after this cycle),
``LINK_EMPTY`` (a RECV with an empty buffer), ``LINK_TYPE`` (a RECV of another
plane count than the oldest message's), ``LINK_OVERFLOW`` (a message completes
while the buffer is full and no RECV takes one in that cycle).  START empties
the buffers.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from arch import isa
from arch.config import TspConfig

from .slice import (
    ERROR_CODE_BITS,
    ErrorCode,
    SliceSignature,
    check_slice_config,
    is_opcode,
    merge_tiles,
    stream_select,
    stream_span,
    stream_write_enables,
    view,
)
from .tile import SkewChain, TileStreamsSignature

__all__ = ["C2cLink", "C2cSlice", "C2cTile", "LinkLaneSignature"]

KIND = "C2C"


class LinkLaneSignature(wiring.Signature):
    """One superlane's lane group of one link, seen from the C2C slice: what it sends
    (``tx_*``) and what arrives (``rx_*``), ``c2c_bytes_per_cycle`` bytes per beat;
    ``last`` marks the last beat of a message."""

    def __init__(self, cfg: TspConfig):
        self.cfg = cfg
        w = 8 * cfg.c2c_bytes_per_cycle
        super().__init__({"tx_valid": Out(1), "tx_last": Out(1), "tx_data": Out(w),
                          "rx_valid": In(1), "rx_last": In(1), "rx_data": In(w)})

    def __eq__(self, other):
        return isinstance(other, LinkLaneSignature) and self.cfg.params() == other.cfg.params()

    def __hash__(self):
        return hash(("LinkLaneSignature", tuple(sorted(self.cfg.params().items()))))


#: byte planes of the widest message (an i32)
PLANES = 4


def c2c_control_layout(cfg: TspConfig) -> data.StructLayout:
    """Decoded C2C instruction carried north through the tiles."""
    return data.StructLayout({
        "valid": 1,
        "send": 1,  # 1 SEND, 0 RECV
        "link": 2,
        "s": 5,
        "d": 1,
        "planes": 3,  # 1, 2 or 4
    })


class C2cTile(wiring.Component):
    """One superlane tile of a C2C slice: a transmitter and a receiver per link."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("C2cTile", cfg)
        if not cfg.c2c_links:
            raise ValueError(f"C2cTile: config {cfg.name!r} has no C2C links (c2c_links = 0)")
        self.cfg = cfg
        super().__init__({
            "ctl": In(c2c_control_layout(cfg)),
            "start": In(1),
            "streams": Out(TileStreamsSignature(cfg)),
            "links": Out(LinkLaneSignature(cfg)).array(cfg.c2c_links),
            "error": Out(1),
            "error_code": Out(ERROR_CODE_BITS),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        B, bw = cfg.c2c_beats, 8 * cfg.c2c_bytes_per_cycle
        D = cfg.c2c_buffer
        NS = cfg.streams_per_direction
        plane = cfg.superlane_bits
        width = PLANES * plane
        c = self.ctl
        st = self.streams
        ib = cfg.stream_index_bits
        # the planes at issue: streams s, s+1, s+2, s+3 (beyond the config: zero)
        value = Cat(*(stream_select(st, ib, (c.s + p)[:ib] if p else c.s[:ib], c.d)
                      for p in range(PLANES)))
        send = c.valid & c.send
        recv = c.valid & ~c.send

        busy_err, empty_err, type_err, over_err, tx_busy = [], [], [], [], []
        heads = []
        for k in range(cfg.c2c_links):
            port = self.links[k]
            mine = c.link == k
            # -- transmitter
            tx_buf = Signal(width, name=f"tx_buf{k}", reset_less=True)
            tx_left = Signal(range(PLANES * B + 1), name=f"tx_left{k}")
            m.d.comb += [port.tx_valid.eq(tx_left != 0), port.tx_last.eq(tx_left == 1),
                         port.tx_data.eq(tx_buf[:bw])]
            with m.If(send & mine):
                m.d.sync += [tx_buf.eq(value), tx_left.eq(c.planes * B)]
            with m.Elif(tx_left != 0):
                m.d.sync += [tx_buf.eq(tx_buf >> bw), tx_left.eq(tx_left - 1)]
            busy_err.append(send & mine & (tx_left > 1))
            tx_busy.append(tx_left != 0)
            # -- receiver: deserialiser and FIFO (64-byte messages; their plane counts in
            # registers beside it, read at RECV issue for the type check)
            rx_buf = Signal(width, name=f"rx_buf{k}", reset_less=True)
            rx_beat = Signal(range(PLANES * B), name=f"rx_beat{k}")
            assembled = Signal(width, name=f"rx_msg{k}")
            m.d.comb += assembled.eq(rx_buf)
            with m.Switch(rx_beat):
                for j in range(PLANES * B):
                    with m.Case(j):
                        m.d.comb += assembled[bw * j:bw * (j + 1)].eq(port.rx_data)
            push = Signal(name=f"rx_push{k}")
            m.d.comb += push.eq(port.rx_valid & port.rx_last)
            with m.If(port.rx_valid):
                m.d.sync += [rx_buf.eq(assembled), rx_beat.eq(Mux(port.rx_last, 0, rx_beat + 1))]
            fifo = m.submodules[f"rx_fifo{k}"] = memory.Memory(shape=width, depth=D, init=[])
            wp, rp = fifo.write_port(), fifo.read_port()
            rd = Signal(range(D), name=f"rx_rd{k}")
            wr = Signal(range(D), name=f"rx_wr{k}")
            count = Signal(range(D + 1), name=f"rx_count{k}")
            pop = Signal(name=f"rx_pop{k}")
            m.d.comb += [pop.eq(recv & mine & (count != 0)),
                         wp.addr.eq(wr), wp.data.eq(assembled), wp.en.eq(push),
                         rp.addr.eq(rd)]
            # the plane count of the oldest message, beside the FIFO (read at RECV issue)
            counts = Array(Signal(3, name=f"rx_planes{k}_{i}") for i in range(D))
            with m.If(push):
                m.d.sync += counts[wr].eq((rx_beat + 1) // B)
            with m.If(self.start):
                m.d.sync += [rd.eq(0), wr.eq(0), count.eq(0), rx_beat.eq(0)]
            with m.Else():
                with m.If(push):
                    m.d.sync += wr.eq(0 if D == 1 else Mux(wr == D - 1, 0, wr + 1))
                with m.If(pop):
                    m.d.sync += rd.eq(0 if D == 1 else Mux(rd == D - 1, 0, rd + 1))
                m.d.sync += count.eq(count + push - pop)
            empty_err.append(recv & mine & (count == 0))
            type_err.append(recv & mine & (count != 0) & (counts[rd] != c.planes))
            over_err.append(push & ~pop & (count == D))
            heads.append(rp.data)

        # RECV: the popped message's planes onto streams out.. in t+1
        out_valid = Signal()
        out_s = Signal(5, reset_less=True)
        out_d = Signal(reset_less=True)
        out_planes = Signal(3, reset_less=True)
        out_link = Signal(2, reset_less=True)
        m.d.sync += out_valid.eq(recv)
        with m.If(recv):
            m.d.sync += [out_s.eq(c.s), out_d.eq(c.d), out_link.eq(c.link),
                         out_planes.eq(c.planes)]
        head = Signal(width)
        for k, h in enumerate(heads):
            with m.If(out_link == k):
                m.d.comb += head.eq(h)
        stream_write_enables(m, st, stream_span(out_valid, out_s, out_planes, NS), out_d)
        for s in range(NS):
            rel = Signal(6, name=f"rel{s}")
            m.d.comb += rel.eq(s - out_s)
            data_s = Signal(plane, name=f"plane{s}")
            with m.Switch(rel[:2]):
                for p in range(PLANES):
                    with m.Case(p):
                        m.d.comb += data_s.eq(head[plane * p:plane * (p + 1)])
            m.d.comb += [st.e_out[s].eq(data_s), st.w_out[s].eq(data_s)]
        m.d.comb += self.busy.eq(Cat(*tx_busy).any() | out_valid)
        for errs, code in ((over_err, ErrorCode.LINK_OVERFLOW),
                           (type_err, ErrorCode.LINK_TYPE),
                           (empty_err, ErrorCode.LINK_EMPTY),
                           (busy_err, ErrorCode.LINK_BUSY)):
            with m.If(Cat(*errs).any()):
                m.d.comb += [self.error.eq(1), self.error_code.eq(code)]
        return m


class C2cSlice(wiring.Component):
    """A C2C slice column: decode in superlane 0, skew the control north, one `C2cTile`
    per superlane; ``links[k][tile]`` is superlane ``tile``'s lane group of link ``k``."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("C2cSlice", cfg)
        if not cfg.c2c_links:
            raise ValueError(f"C2cSlice: config {cfg.name!r} has no links (c2c_links=0)")
        self.cfg = cfg
        members = dict(SliceSignature(cfg).members.items())
        members["start"] = In(1)
        members["links"] = Out(LinkLaneSignature(cfg)).array(cfg.c2c_links, cfg.superlanes)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S = cfg.superlanes
        word = self.issue.word
        ctl = Signal(c2c_control_layout(cfg))
        is_send = is_opcode(word, KIND, "SEND")
        is_recv = is_opcode(word, KIND, "RECV")
        vs = view(word, KIND, "SEND")  # RECV keeps link, stream and type in the same bits
        m.d.comb += [
            ctl.valid.eq(self.issue.valid & (is_send | is_recv)),
            ctl.send.eq(is_send),
            ctl.link.eq(vs.link),
            ctl.s.eq(vs.in_s),
            ctl.d.eq(vs.in_d),
            ctl.planes.eq(Array(isa.type_bytes(t) for t in range(len(isa.TYPES)))[vs.type]),
        ]
        m.submodules.skew = skew = SkewChain(c2c_control_layout(cfg), S)
        m.d.comb += skew.i.eq(ctl)
        tiles = []
        for k in range(S):
            tile = m.submodules[f"tile{k}"] = C2cTile(cfg)
            wiring.connect(m, wiring.flipped(self.tiles[k]), tile.streams)
            m.d.comb += [tile.ctl.eq(skew.o[k]), tile.start.eq(self.start)]
            for j in range(cfg.c2c_links):
                wiring.connect(m, wiring.flipped(self.links[j][k]), tile.links[j])
            tiles.append(tile)
        merge_tiles(m, self, tiles, skew)
        return m


class C2cLink(wiring.Component):
    """The wire of one direction of one link, all superlanes: ``c2c_latency - 1``
    registers, so a beat sent in cycle ``x`` reaches the far deserialiser in
    ``x + c2c_latency - 1``."""

    def __init__(self, cfg: TspConfig):
        check_slice_config("C2cLink", cfg)
        if not cfg.c2c_links:
            raise ValueError(f"C2cLink: config {cfg.name!r} has no C2C links (c2c_links = 0)")
        self.cfg = cfg
        w = 8 * cfg.c2c_bytes_per_cycle
        S = cfg.superlanes
        super().__init__({
            "i_valid": In(S), "i_last": In(S), "i_data": In(w * S),
            "o_valid": Out(S), "o_last": Out(S), "o_data": Out(w * S),
        })

    def elaborate(self, platform):
        m = Module()
        v, last, d = self.i_valid, self.i_last, self.i_data
        for k in range(self.cfg.c2c_latency - 1):
            nv = Signal.like(v, name=f"valid{k}")
            nl = Signal.like(last, name=f"last{k}", reset_less=True)
            nd = Signal.like(d, name=f"data{k}", reset_less=True)
            m.d.sync += [nv.eq(v), nl.eq(last), nd.eq(d)]
            v, last, d = nv, nl, nd
        m.d.comb += [self.o_valid.eq(v), self.o_last.eq(last), self.o_data.eq(d)]
        return m


assert all(isa.instr_def(KIND, "SEND").field(a).offset
           == isa.instr_def(KIND, "RECV").field(b).offset
           for a, b in (("link", "link"), ("in_s", "out_s"), ("in_d", "out_d"),
                        ("type", "type")))
