"""Machine parameters: one frozen dataclass that everything reads.

`TspConfig` holds the free parameters of a Tensor Streaming Processor; derived
facts (vector length, the west-to-east slice positions, SRAM size, ...) are
properties, so there is one source of truth for each.  Variants are made with
`TspConfig.replace`, which re-runs the validation and names the variant after what it
changes (`dataclasses.replace` keeps the name).

Floorplan, west to east, mirrored about the VXM::

    [C2C_W] | MXM_W{m-1}..MXM_W0 | SXM_W | MEM_W{n-1}..MEM_W0 | VXM |
        MEM_E0..MEM_E{n-1} | SXM_E | MXM_E0..MXM_E{m-1} | [C2C_E]

Position 0 is the westmost slice.  MEM slices are numbered from the centre
outwards, so MEM_W0 and MEM_E0 are the VXM's neighbours.  The chip-to-chip
slices C2C_W and C2C_E sit at the two ends of the row when the config has
links (``c2c_links >= 1``); a link of C2C_E leads to a C2C_W of the next chip
(docs/architecture.md, "Several chips").  With ``vxm_groups`` G > 1 the centre is G
VXM slices in a row, ``VXM | VXM1 | ... | VXM{G-1}``, each with its own queue.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property

LANES_PER_SUPERLANE = 16
MEM_BANKS = 2
#: the deepest instruction queue a config may have (words)
IMEM_MAX = 1 << 18

KINDS = ("MXM", "SXM", "MEM", "VXM", "C2C")


@dataclass(frozen=True)
class SlicePosition:
    """One functional slice: its position (0 = westmost), kind and name."""

    index: int
    kind: str  # one of KINDS
    hemisphere: str  # "W", "E" or "C" (the VXM, in the centre)
    ordinal: int  # counted from the centre outwards within the hemisphere
    name: str  # e.g. "MEM_W0", "VXM", "MXM_E0"


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class TspConfig:
    """Free parameters of the machine.  All other facts are derived properties.

    Not parameters: 16 lanes per superlane (the reference chip's, kept when scaling) and
    the two chained ALU stages of a VXM group per lane (one VXM word chains exactly two
    ops, fixed by the ISA).  How many VXM groups there are is a parameter
    (``vxm_groups``)."""

    name: str = "custom"
    #: superlanes (rows of tiles); the vector is superlanes x 16 lanes
    superlanes: int = 2
    #: lanes per superlane: 16 on the reference chip, kept fixed when scaling
    lanes_per_superlane: int = LANES_PER_SUPERLANE
    #: byte-wide streams in each direction (eastward and westward)
    streams_per_direction: int = 16
    #: MEM slices in each hemisphere
    mem_slices_per_hemisphere: int = 4
    #: addresses (16-byte words per tile) in each of the two banks of a MEM slice
    mem_depth: int = 512
    #: MXM slices in each hemisphere (each a vector-length-square int8 MAC array)
    mxms_per_hemisphere: int = 1
    #: instruction words in each slice's instruction queue memory (MEM and SXM queues,
    #: and the MXM and VXM queues unless they have their own depth below)
    imem_depth: int = 1024
    #: instruction words in each MXM queue; 0: ``imem_depth``
    mxm_imem_depth: int = 0
    #: instruction words in the VXM queue; 0: ``imem_depth``.  The VXM issues the most
    #: words (every requantisation, norm and softmax step), so it may hold more.
    vxm_imem_depth: int = 0
    #: independent VXM ALU groups, each a VXM slice of its own in the centre of the row
    #: (``VXM``, ``VXM1``, ..., west to east): its own instruction queue, two chained ALU
    #: stages and 16 registers per lane; they pass values on the streams like any two
    #: neighbouring slices, one cycle per group crossed.  The reference chip has 16 ALUs
    #: per lane (a 4x4 mesh).
    vxm_groups: int = 1
    #: 1: a MEM slice issues a READ and a WRITE in the same cycle, one word (``READ addr,
    #: sN.D, w=ADDR@sM.D``: the read port in that cycle, the write port the banks already
    #: have in the next; still one access per bank and cycle); 0: one MEM instruction per
    #: cycle
    mem_read_write: int = 0
    #: rows of the transposer in each SXM (0: none; else a multiple of 16, at most VL): a
    #: buffer of that many int8 vectors, written one row per cycle (``TPUT``) and read one
    #: column per cycle across the superlanes (``TGET``: lane r of the result is row r's
    #: byte in that column), so an R x VL tile is transposed in R + VL issue slots.  The
    #: reference chip's SXM transposes 16 x 16 blocks of 16 streams.
    sxm_transpose_rows: int = 0
    #: weight rows an MXM loads per cycle (a power of two, 1..16, at most half the streams
    #: of a direction): ``LW``/``LWT``/``MVM lw=`` with ``rows=n`` write n rows (columns)
    #: of the shadow buffer from n consecutive streams in one cycle, so a VL-row tile loads
    #: in VL / n cycles.  The n rows lie in one aligned group of this many (row // K ==
    #: (row + n - 1) // K): each shadow row has one operand line (row % K), no multiplexer.
    #: The reference chip installs weights from 16 streams.
    mxm_load_rows: int = 1
    #: chip-to-chip links at each end of the slice row (C2C_W, C2C_E); 0: no C2C slices
    c2c_links: int = 0
    #: cycles from a SEND's issue to its first byte at the far end (wire and SerDes); a
    #: message of w planes is in the far end's receive buffer ``c2c_latency + w *
    #: c2c_beats`` cycles after (`c2c_arrival`)
    c2c_latency: int = 8
    #: bytes per cycle a link moves in each superlane (its lane group there): a link moves
    #: ``superlanes x c2c_bytes_per_cycle`` bytes per cycle, a vector in ``16 / this`` beats
    c2c_bytes_per_cycle: int = 4
    #: vectors each link's receive buffer holds (arrived, not yet taken by a RECV)
    c2c_buffer: int = 4

    # -- validation ---------------------------------------------------------

    _RANGES = {
        "superlanes": (1, 20),
        "lanes_per_superlane": (LANES_PER_SUPERLANE, LANES_PER_SUPERLANE),
        "streams_per_direction": (8, 32),
        "mem_slices_per_hemisphere": (1, 44),
        "mem_depth": (16, 4096),
        "mxms_per_hemisphere": (1, 4),
        "imem_depth": (16, IMEM_MAX),
        "mxm_imem_depth": (16, IMEM_MAX),
        "vxm_imem_depth": (16, IMEM_MAX),
        "vxm_groups": (1, 16),
        "mem_read_write": (0, 1),
        "sxm_transpose_rows": (0, 320),
        "mxm_load_rows": (1, 16),
        "c2c_links": (0, 4),
        "c2c_latency": (1, 1024),
        "c2c_bytes_per_cycle": (1, LANES_PER_SUPERLANE),
        "c2c_buffer": (1, 64),
    }
    _POW2 = ("mem_depth", "imem_depth", "mxm_imem_depth", "vxm_imem_depth",
             "c2c_bytes_per_cycle", "mxm_load_rows")
    #: link parameters: part of the hardware (and its hash) only when there are links
    _C2C_ONLY = ("c2c_latency", "c2c_bytes_per_cycle", "c2c_buffer")
    #: fields whose 0 means "the same as imem_depth"
    _ZERO_IS_DEFAULT = ("mxm_imem_depth", "vxm_imem_depth")

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"TspConfig.name must be a non-empty string, got {self.name!r}")
        for field, (lo, hi) in self._RANGES.items():
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"TspConfig.{field} must be an int in [{lo}, {hi}], "
                    f"got {type(value).__name__} {value!r}"
                )
            if value == 0 and field in self._ZERO_IS_DEFAULT:
                continue
            if not lo <= value <= hi:
                if field in self._ZERO_IS_DEFAULT:
                    raise ValueError(f"TspConfig.{field} must be 0 (= imem_depth) or in "
                                     f"[{lo}, {hi}], got {value}")
                if lo == hi:
                    raise ValueError(
                        f"TspConfig.{field} must be {lo} (fixed by the architecture), got {value}"
                    )
                raise ValueError(f"TspConfig.{field} must be in [{lo}, {hi}], got {value}")
            if field in self._POW2 and not _is_pow2(value):
                if field == "mxm_load_rows":  # its real bound: half the streams
                    hi = min(hi, self.streams_per_direction // 2)
                raise ValueError(
                    f"TspConfig.{field} must be a power of two in [{lo}, {hi}], got {value}"
                )
        r, vl = self.sxm_transpose_rows, self.superlanes * self.lanes_per_superlane
        if r and (r % self.lanes_per_superlane or r > vl):
            raise ValueError(f"TspConfig.sxm_transpose_rows must be 0 (no transposer) or a "
                             f"multiple of {self.lanes_per_superlane} up to the vector length "
                             f"{vl}, got {r}")
        if 2 * self.mxm_load_rows > self.streams_per_direction:
            raise ValueError(f"TspConfig.mxm_load_rows must be at most half the streams per "
                             f"direction ({self.streams_per_direction // 2}), got "
                             f"{self.mxm_load_rows}")

    def replace(self, **changes) -> TspConfig:
        """A variant of this config (validated again).  Without a ``name`` it is named
        after what changed, as `get_config` spells it (``small.replace(vxm_groups=2)`` is
        ``"small:vxm_groups=2"``), so that a variant never reports itself as its preset."""
        if "name" not in changes:
            moved = {k: v for k, v in changes.items() if getattr(self, k, v) != v}
            if moved:
                changes = {**changes, "name": _variant_name(self.name, moved)}
        return dataclasses.replace(self, **changes)

    # -- derived: vectors and streams ---------------------------------------

    @property
    def vector_length(self) -> int:
        """Lanes in a vector (bytes per stream): superlanes x 16."""
        return self.superlanes * self.lanes_per_superlane

    @property
    def superlane_bits(self) -> int:
        """Bits of one stream in one superlane tile (16 lanes x 8 bits)."""
        return self.lanes_per_superlane * 8

    @property
    def stream_index_bits(self) -> int:
        return max(1, (self.streams_per_direction - 1).bit_length())

    # -- derived: chip-to-chip links -------------------------------------------

    @property
    def c2c_beats(self) -> int:
        """Cycles a link takes to move one vector (each superlane's 16 bytes in
        ``c2c_bytes_per_cycle``-byte beats, all superlanes in parallel)."""
        return self.lanes_per_superlane // self.c2c_bytes_per_cycle

    def c2c_arrival(self, planes: int = 1) -> int:
        """Cycles from a SEND of a ``planes``-plane message (its type's bytes) to the first
        cycle a RECV may take it: the link's latency and the message's beats."""
        return self.c2c_latency + planes * self.c2c_beats

    # -- derived: memory ----------------------------------------------------

    @property
    def mem_banks(self) -> int:
        return MEM_BANKS

    @property
    def mem_addresses(self) -> int:
        """Addresses per MEM slice (both banks); bank = address // mem_depth."""
        return self.mem_depth * MEM_BANKS

    @property
    def mem_address_bits(self) -> int:
        return (self.mem_addresses - 1).bit_length()

    @property
    def mem_slice_bytes(self) -> int:
        """SRAM bytes in one MEM slice (all superlanes)."""
        return self.mem_addresses * self.vector_length

    @property
    def weight_rows_per_cycle(self) -> int:
        """VL-byte weight rows the chip can move from SRAM into its MXMs per cycle: each MXM
        loads ``mxm_load_rows`` per cycle and each MEM slice reads one vector per cycle
        (the weight-streaming bound of a decode step is its weight rows over this)."""
        mxms = 2 * self.mxms_per_hemisphere
        return min(mxms * self.mxm_load_rows, 2 * self.mem_slices_per_hemisphere)

    @property
    def sram_bytes(self) -> int:
        """SRAM bytes on the whole chip."""
        return self.mem_slice_bytes * self.mem_slices_per_hemisphere * 2

    def imem_field_of(self, queue: str) -> str:
        """The field that sets the depth of slice ``queue``'s queue (a slice name or kind)."""
        kind = queue if queue in KINDS else self.slice(queue).kind
        own = {"MXM": "mxm_imem_depth", "VXM": "vxm_imem_depth"}.get(kind)
        return own if own and getattr(self, own) else "imem_depth"

    def imem_depth_of(self, queue: str) -> int:
        """Instruction words in the queue of slice ``queue`` (a slice name or kind)."""
        return getattr(self, self.imem_field_of(queue))

    def imem_fits(self, words: dict[str, int]) -> bool:
        """Whether every queue's words (slice name -> count) fit its instruction memory."""
        return all(n <= self.imem_depth_of(q) for q, n in words.items())

    def imem_address_bits_of(self, queue: str) -> int:
        return (self.imem_depth_of(queue) - 1).bit_length()

    @property
    def imem_bytes(self) -> int:
        """Instruction memory on the whole chip (64-bit words, every queue)."""
        return sum(self.imem_depth_of(s.name) for s in self.slices) * 8

    # -- derived: floorplan -------------------------------------------------

    @cached_property
    def slices(self) -> tuple[SlicePosition, ...]:
        """All slice positions, west (index 0) to east."""
        west: list[tuple[str, int]] = []
        west += [("C2C", 0)] if self.c2c_links else []
        west += [("MXM", i) for i in reversed(range(self.mxms_per_hemisphere))]
        west += [("SXM", 0)]
        west += [("MEM", i) for i in reversed(range(self.mem_slices_per_hemisphere))]
        out: list[SlicePosition] = []
        for kind, i in west:
            suffix = f"W{i}" if kind not in ("SXM", "C2C") else "W"
            out.append(SlicePosition(len(out), kind, "W", i, f"{kind}_{suffix}"))
        for g in range(self.vxm_groups):
            out.append(SlicePosition(len(out), "VXM", "C", g, self.vxm_name(g)))
        for kind, i in reversed(west):
            suffix = f"E{i}" if kind not in ("SXM", "C2C") else "E"
            out.append(SlicePosition(len(out), kind, "E", i, f"{kind}_{suffix}"))
        return tuple(out)

    @staticmethod
    def vxm_name(group: int) -> str:
        """The slice name of VXM group ``group``: "VXM" for the first, "VXM1", ... after."""
        return f"VXM{group}" if group else "VXM"

    @property
    def n_positions(self) -> int:
        return len(self.slices)

    def slice(self, name: str) -> SlicePosition:
        """The slice called `name` (e.g. "MEM_E2"); ValueError listing the names if unknown."""
        for s in self.slices:
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.slices)
        raise ValueError(f"config {self.name!r} has no slice {name!r}; slices are: {names}")

    def slices_of(self, kind: str) -> tuple[SlicePosition, ...]:
        if kind not in KINDS:
            raise ValueError(f"unknown slice kind {kind!r}; kinds are {', '.join(KINDS)}")
        return tuple(s for s in self.slices if s.kind == kind)

    # -- identity -----------------------------------------------------------

    def params(self) -> dict[str, int]:
        """The hardware parameters (everything but the name; without links, not the link
        parameters either: they describe no hardware then; one VXM group, no MEM read-write
        issue, no transposer and one-row weight loads are left out, so that configs from
        before those parameters keep their hash)."""
        skip = {"name", *(() if self.c2c_links else self._C2C_ONLY),
                *(() if self.vxm_groups > 1 else ("vxm_groups",)),
                *(() if self.mem_read_write else ("mem_read_write",)),
                *(() if self.sxm_transpose_rows else ("sxm_transpose_rows",)),
                *(() if self.mxm_load_rows > 1 else ("mxm_load_rows",))}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}

    def to_dict(self) -> dict:
        return {"name": self.name, **self.params()}

    @classmethod
    def from_dict(cls, d: dict) -> TspConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown TspConfig field(s) {unknown}; fields are {sorted(known)}"
            )
        return cls(**d)

    def stable_hash(self) -> str:
        """A short hash of the hardware parameters, stable across runs and machines."""
        blob = json.dumps(self.params(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def summary(self) -> str:
        return (
            f"{self.name}: {self.superlanes} superlane(s), VL={self.vector_length}, "
            f"{self.streams_per_direction} streams/dir, "
            f"{self.mem_slices_per_hemisphere} MEM/hemisphere x {self.mem_addresses} addr, "
            f"{self.mxms_per_hemisphere} MXM/hemisphere, "
            + (f"{self.vxm_groups} VXM groups, " if self.vxm_groups > 1 else "")
            + (f"{self.sxm_transpose_rows}-row SXM transposers, "
               if self.sxm_transpose_rows else "")
            + (f"{self.mxm_load_rows}-row weight loads, " if self.mxm_load_rows > 1 else "")
            + f"{self.n_positions} slice positions, "
            f"SRAM {self.sram_bytes / 1024:.0f} KiB"
            + (f", {self.c2c_links} C2C link(s)/end ({self.c2c_latency} cycles, "
               f"{self.c2c_beats} beats/vector)" if self.c2c_links else "")
        )

    def with_links(self) -> TspConfig:
        """This config with its C2C slices (one link at each end unless it has links): what
        each chip of a system (`golden.system`, `hdl.system`) is."""
        if self.c2c_links:
            return self
        return self.replace(name=f"{self.name}+c2c", c2c_links=1)


PRESETS: dict[str, TspConfig] = {
    "tiny": TspConfig(
        name="tiny", superlanes=1, streams_per_direction=8, mem_slices_per_hemisphere=2,
        mem_depth=256, imem_depth=512,
    ),
    # an odd superlane count (VL = 48, not a power of two) at tiny's cost per superlane:
    # the regression's check that nothing assumes 1, 2 or 4 superlanes, nor one depth for
    # every instruction queue (MXM and VXM queues deeper than the others), nor one VXM
    # (two VXM groups), nor one MEM instruction per cycle (a READ and a WRITE per word);
    # its SXMs have transposers (32 rows: fewer than VL), its MXMs load two weight rows
    # per cycle
    "tiny3": TspConfig(
        name="tiny3", superlanes=3, streams_per_direction=8, mem_slices_per_hemisphere=2,
        mem_depth=256, imem_depth=512, mxm_imem_depth=1024, vxm_imem_depth=2048,
        vxm_groups=2, mem_read_write=1, sxm_transpose_rows=32, mxm_load_rows=2,
    ),
    "small": TspConfig(
        name="small", superlanes=2, streams_per_direction=16, mem_slices_per_hemisphere=4,
        mem_depth=512, imem_depth=1024,
    ),
    "medium": TspConfig(
        name="medium", superlanes=4, streams_per_direction=16, mem_slices_per_hemisphere=4,
        mem_depth=1024, imem_depth=2048,
    ),
    # One real SmolLM2-135M decoder layer (3.4 MiB of int8 weights, their block scales and
    # offsets, a KV cache) on the RTL: medium's vector (VL = 64, d_model 576 = 9 tiles, one
    # 64-lane head per tile), 6 MEM slices of 512 KiB per hemisphere, every weight tile's MXM
    # one of four, and instruction memories for a ~20k-cycle decode step.  76 tiles.
    "layer": TspConfig(
        name="layer", superlanes=4, streams_per_direction=16, mem_slices_per_hemisphere=6,
        mem_depth=4096, mxms_per_hemisphere=2, imem_depth=32768,
    ),
    # The published chip: 20 superlanes, 32 streams/direction, 44 MEM slices per
    # hemisphere of 8192 addresses (2.5 MiB each).  Elaboration and analysis only.  Its
    # queues hold one whole SmolLM2-135M decode step resident (`make llm`): 16k words per
    # MEM/SXM/C2C queue, 64k per MXM, 256k for the VXM -- 15.5 MiB of instruction memory
    # beside the 220 MiB of MEM (the reference chip fetches instructions from MEM instead).
    # C2C: 4 links at each end, each 1 byte per cycle per superlane (20 B/cycle, 18 GB/s at
    # 900 MHz: the reference's ~14 GB/s links, rounded up to this model's finest width), a
    # vector in 16 beats; the 64-cycle latency is an assumption (the reference publishes
    # none).
    "full": TspConfig(
        name="full", superlanes=20, streams_per_direction=32, mem_slices_per_hemisphere=44,
        mem_depth=4096, mxms_per_hemisphere=2, imem_depth=16384, mxm_imem_depth=65536,
        vxm_imem_depth=262144, c2c_links=4, c2c_latency=64, c2c_bytes_per_cycle=1,
    ),
}

DEFAULT_CONFIG = "small"


def preset_hint(param: str, need: int) -> str:
    """What to use when a config needs ``param >= need``: the smallest preset that has
    it, or that no preset has (with the largest value any preset has)."""
    order = list(PRESETS)  # ties: the preset listed first (the cheaper one)
    have = sorted((getattr(c, param), order.index(n), n) for n, c in PRESETS.items())
    fits = [n for v, _, n in have if v >= need]
    if fits:
        return f"use a config with {param} >= {need} (preset {fits[0]!r} has " \
               f"{getattr(PRESETS[fits[0]], param)})"
    v, _, n = have[-1]
    return f"no preset has {param} >= {need} (the largest, {n!r}, has {v})"


def _variant_name(name: str, moved: dict) -> str:
    """``name`` with the fields in ``moved`` set: ``base[:k=v,...][+c2c]`` (a link count
    other than with_links' 1 goes into the list instead of the ``+c2c``)."""
    links = name.endswith("+c2c")
    head = name[:-len("+c2c")] if links else name
    base, _, listed = head.partition(":")
    fields = dict(item.split("=", 1) for item in listed.split(",") if "=" in item)
    fields.update({k: str(v) for k, v in moved.items()})
    if links and "c2c_links" in moved:
        links = False
    elif links:
        fields.pop("c2c_links", None)
    listed = ",".join(f"{k}={v}" for k, v in fields.items())
    return base + (f":{listed}" if listed else "") + ("+c2c" if links else "")


def get_config(name: str | TspConfig | None = None) -> TspConfig:
    """A preset by name (default "small"), a preset with some fields changed
    (``"medium:vxm_groups=4"``, ``"small:mem_depth=1024,vxm_groups=2"``: integers; the
    config is named by the whole string), either with ``+c2c`` (`TspConfig.with_links`:
    ``"tiny+c2c"``), or a config passed through."""
    if isinstance(name, TspConfig):
        return name
    if name is None or name == "":
        name = DEFAULT_CONFIG
    if name.endswith("+c2c"):  # the name `TspConfig.with_links` gives
        if not name[:-len("+c2c")]:
            raise ValueError(f"config {name!r}: no config name before +c2c")
        return get_config(name[:-len("+c2c")]).with_links()
    base, _, changes = name.partition(":")
    try:
        cfg = PRESETS[base]
    except KeyError:
        raise ValueError(
            f"unknown config {base!r}; presets are: {', '.join(PRESETS)}"
        ) from None
    if not changes:
        return cfg
    fields = {f.name for f in dataclasses.fields(TspConfig)} - {"name"}
    kw = {}
    for item in changes.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in fields or not eq:
            raise ValueError(f"config {name!r}: {item!r} is not field=value with a field of "
                             f"TspConfig ({', '.join(sorted(fields))})")
        if key in kw:
            raise ValueError(f"config {name!r}: {key} is given twice")
        try:
            if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
                raise ValueError
            kw[key] = int(value)
        except ValueError:
            raise ValueError(f"config {name!r}: {key} must be an integer, got "
                             f"{value.strip()!r}") from None
    try:
        return cfg.replace(name=name, **kw)
    except ValueError as e:
        raise ValueError(f"config {name!r}: {e}") from None
