"""A whole-machine program: one list of 64-bit instruction words per slice queue.

Binary format (all integers little-endian), read by the RTL host loader::

    offset  size      field
    0       4         magic b"TSPQ"
    4       2         format version (1)
    6       2         Q = number of queues = cfg.n_positions
    8       16        config hash (ASCII hex, TspConfig.stable_hash())
    24      16        config name (ASCII, NUL-padded)
    40      4 * Q     word count of each queue, in slice position order (west to east)
    40+4Q   8 * sum   the words, queue after queue, each a u64

Every queue holds at least one word; a slice given no instructions gets ``[HALT]``.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Mapping, Sequence

from .config import PRESETS, TspConfig
from .isa import WORD_MASK, Instr, IsaError, decode, encode

MAGIC = b"TSPQ"
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sHH16s16s")
HALT_WORD = encode("HALT")


class ProgramError(ValueError):
    """A malformed program or program binary."""


def config_from_hash(config_hash: str, name: str = "") -> TspConfig:
    """The preset whose stable hash is ``config_hash`` (ProgramError if none)."""
    for cfg in PRESETS.values():
        if cfg.stable_hash() == config_hash:
            return cfg
    raise ProgramError(
        f"program built for config {name!r} (the header keeps 16 bytes of the name; hash "
        f"{config_hash}) which is not a preset; give its config: sim run --config NAME "
        f"(e.g. tiny:vxm_groups=2), arch.asm --config NAME, or Program.from_bytes(data, cfg)"
    )


class Program:
    """Per-slice instruction words for one config (``cfg``)."""

    def __init__(self, cfg: TspConfig, queues: Mapping[str, Sequence[int]] | None = None):
        self.cfg = cfg
        queues = dict(queues or {})
        names = [s.name for s in cfg.slices]
        unknown = [n for n in queues if n not in names]
        if unknown:
            raise ProgramError(
                f"config {cfg.name!r} has no slice(s) {unknown}; slices are: {', '.join(names)}"
            )
        self.queues: dict[str, list[int]] = {}
        for n in names:
            raw = queues.get(n, ())
            if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
                raise ProgramError(f"{n}: expected a sequence of instruction words, got "
                                   f"{type(raw).__name__}")
            words = []
            for i, w in enumerate(raw):
                try:
                    if isinstance(w, bool):
                        raise TypeError
                    w = operator.index(w)
                except TypeError:
                    raise ProgramError(f"{n} word {i}: expected an int instruction word, got "
                                       f"{type(w).__name__} {w!r}") from None
                if not 0 <= w <= WORD_MASK:
                    raise ProgramError(f"{n} word {i}: {w:#x} is not a 64-bit value "
                                       f"(0 <= word < 2**64)")
                words.append(w)
            words = words or [HALT_WORD]
            if len(words) > cfg.imem_depth_of(n):
                raise ProgramError(
                    f"{n}: {len(words)} instructions exceed "
                    f"{cfg.imem_field_of(n)}={cfg.imem_depth_of(n)}"
                )
            self.queues[n] = words

    @property
    def config_name(self) -> str:
        return self.cfg.name

    @property
    def config_hash(self) -> str:
        return self.cfg.stable_hash()

    def words(self, slice_name: str) -> list[int]:
        return self.queues[slice_name]

    def instrs(self, slice_name: str) -> list[Instr]:
        """The decoded instructions of one queue (IsaError naming the slice and word index
        on an illegal word)."""
        kind = self.cfg.slice(slice_name).kind
        out = []
        for i, w in enumerate(self.queues[slice_name]):
            try:
                out.append(decode(kind, w))
            except IsaError as exc:
                raise IsaError(f"{slice_name} word {i}: {exc}") from None
        return out

    @classmethod
    def from_instrs(cls, cfg: TspConfig, queues: Mapping[str, Sequence[Instr | int]]) -> Program:
        return cls(cfg, {n: [i if isinstance(i, int) else i.encode() for i in q]
                         for n, q in queues.items()})

    def __eq__(self, other) -> bool:
        return (isinstance(other, Program) and self.config_hash == other.config_hash
                and self.queues == other.queues)

    def __repr__(self) -> str:
        n = sum(len(q) for q in self.queues.values())
        return f"Program(config={self.cfg.name!r}, {n} words in {len(self.queues)} queues)"

    # -- binary ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        name = self.cfg.name.encode("ascii")[:16]
        out = [HEADER.pack(MAGIC, FORMAT_VERSION, len(self.queues),
                           self.config_hash.encode("ascii"), name)]
        out.append(struct.pack(f"<{len(self.queues)}I", *(len(q) for q in self.queues.values())))
        for q in self.queues.values():
            out.append(struct.pack(f"<{len(q)}Q", *q))
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes, cfg: TspConfig | None = None) -> Program:
        """Parse a binary; ``cfg`` defaults to the preset with the header's config hash."""
        if len(data) < HEADER.size:
            raise ProgramError(f"program binary truncated: {len(data)} bytes, shorter than "
                               f"its {HEADER.size}-byte header")
        magic, version, nq, h, name = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ProgramError(f"not a program binary (magic {magic!r}, expected {MAGIC!r})")
        if version != FORMAT_VERSION:
            raise ProgramError(f"unsupported program format version {version}")
        try:
            h = h.decode("ascii")
        except UnicodeDecodeError:
            raise ProgramError(f"corrupt header: the config hash {h!r} is not ASCII "
                               "text") from None
        try:
            name = name.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            raise ProgramError(f"corrupt header: the config name {name!r} is not ASCII "
                               "text") from None
        if cfg is None:
            cfg = config_from_hash(h, name)
        elif cfg.stable_hash() != h:
            raise ProgramError(
                f"program built for config {name!r} (hash {h}), not for {cfg.name!r} "
                f"(hash {cfg.stable_hash()})"
            )
        if nq != cfg.n_positions:
            raise ProgramError(f"program has {nq} queues, config has {cfg.n_positions}")
        off = HEADER.size
        if len(data) < off + 4 * nq:
            raise ProgramError(
                f"program binary truncated: {len(data)} bytes, but its header and the word "
                f"counts of its {nq} queues take {off + 4 * nq}")
        counts = struct.unpack_from(f"<{nq}I", data, off)
        off += 4 * nq
        if len(data) < off + 8 * sum(counts):
            raise ProgramError(
                f"program binary truncated: {len(data)} bytes, but its queue counts "
                f"({sum(counts)} words) need {off + 8 * sum(counts)}")
        if len(data) != off + 8 * sum(counts):
            raise ProgramError(
                f"program binary is {len(data)} bytes, header says {off + 8 * sum(counts)}"
            )
        queues = {}
        for s, n in zip(cfg.slices, counts, strict=True):
            queues[s.name] = list(struct.unpack_from(f"<{n}Q", data, off))
            off += 8 * n
        try:
            return cls(cfg, queues)
        except IsaError as exc:  # pragma: no cover - words are not decoded here
            raise ProgramError(str(exc)) from exc
