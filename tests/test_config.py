"""The machine configuration: presets, derived facts, validation, hashing."""

import dataclasses

import pytest

from arch.config import PRESETS, TspConfig, get_config


def test_presets_match_the_issue():
    tiny, small, medium, full = (PRESETS[n] for n in ("tiny", "small", "medium", "full"))
    assert (tiny.superlanes, tiny.streams_per_direction,
            tiny.mem_slices_per_hemisphere) == (1, 8, 2)
    assert (small.superlanes, small.streams_per_direction, small.mem_slices_per_hemisphere) == (
        2, 16, 4)
    assert medium.superlanes == 4
    assert (full.superlanes, full.streams_per_direction, full.mem_slices_per_hemisphere) == (
        20, 32, 44)
    assert full.mem_addresses == 8192
    assert get_config() is small


def test_full_chip_matches_published_figures():
    full = PRESETS["full"]
    assert full.vector_length == 320
    # 2.5 MiB per MEM slice, 220 MiB of SRAM on the chip
    assert full.mem_slice_bytes == 2.5 * 2**20
    assert full.sram_bytes == 220 * 2**20


def test_queue_depths_per_kind():
    """MEM and SXM queues hold imem_depth words; MXM and VXM queues their own depth where
    one is set (0: imem_depth); the host's address field covers the deepest queue."""
    small, tiny3, full = (PRESETS[n] for n in ("small", "tiny3", "full"))
    assert {small.imem_depth_of(s.name) for s in small.slices} == {1024}
    assert [tiny3.imem_depth_of(k) for k in ("MEM", "SXM", "MXM", "VXM")] == [
        512, 512, 1024, 2048]
    assert tiny3.imem_depth_of("MXM_E0") == 1024 and tiny3.imem_field_of("VXM") == "vxm_imem_depth"
    assert small.imem_field_of("VXM") == "imem_depth"
    # full: 88 MEM + 2 SXM + 2 C2C queues of 16k words, 4 MXM of 64k, the VXM's 256k
    # (64-bit words)
    assert full.imem_bytes == (92 * 16384 + 4 * 65536 + 262144) * 8
    assert tiny3.imem_fits({"VXM": 2048, "MEM_W0": 512})
    assert not tiny3.imem_fits({"MEM_W0": 513})


@pytest.mark.parametrize("name", list(PRESETS))
def test_floorplan_is_mirrored(name):
    cfg = PRESETS[name]
    kinds = [s.kind for s in cfg.slices]
    assert kinds == kinds[::-1], "floorplan must be mirrored about the VXM"
    if cfg.c2c_links:  # the chip-to-chip slices at the two ends
        assert (cfg.slices[0].name, cfg.slices[-1].name) == ("C2C_W", "C2C_E")
        kinds = kinds[1:-1]
    else:
        assert "C2C" not in kinds
    assert [s.index for s in cfg.slices] == list(range(cfg.n_positions))
    assert kinds.count("MEM") == 2 * cfg.mem_slices_per_hemisphere
    assert kinds.count("MXM") == 2 * cfg.mxms_per_hemisphere
    assert kinds[0] == "MXM" and kinds[-1] == "MXM"
    # the VXM groups in the centre, then MEM slices numbered from the centre outwards
    vxm = [s for s in cfg.slices if s.kind == "VXM"]
    assert [s.name for s in vxm] == ["VXM"] + [f"VXM{g}" for g in range(1, cfg.vxm_groups)]
    assert vxm[0].index + cfg.vxm_groups - 1 == vxm[-1].index
    assert (vxm[0].index + vxm[-1].index) == cfg.n_positions - 1
    assert cfg.slices[vxm[0].index - 1].name == "MEM_W0"
    assert cfg.slices[vxm[-1].index + 1].name == "MEM_E0"
    assert len({s.name for s in cfg.slices}) == cfg.n_positions


@pytest.mark.parametrize("groups", [1, 2, 3, 16])
def test_vxm_groups_sit_in_the_centre_with_their_own_queues(groups):
    cfg = PRESETS["small"].replace(vxm_groups=groups)
    names = [s.name for s in cfg.slices]
    assert names[4:6] == ["MEM_W1", "MEM_W0"]
    assert names[6:6 + groups] == ["VXM", *(f"VXM{g}" for g in range(1, groups))]
    assert names[6 + groups] == "MEM_E0"
    assert cfg.n_positions == PRESETS["small"].n_positions + groups - 1
    # every group a queue of the VXM's depth
    assert cfg.imem_bytes == PRESETS["small"].imem_bytes + (groups - 1) * 1024 * 8
    # one group is the config from before the parameter: the same hash
    assert (cfg.stable_hash() == PRESETS["small"].stable_hash()) == (groups == 1)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("superlanes", 0, "superlanes must be in [1, 20], got 0"),
    ("superlanes", 21, "superlanes must be in [1, 20], got 21"),
    ("lanes_per_superlane", 8, "lanes_per_superlane must be 16"),
    ("streams_per_direction", 4, "streams_per_direction must be in [8, 32]"),
    ("mem_depth", 300, "mem_depth must be a power of two"),
    ("mem_slices_per_hemisphere", 45, "mem_slices_per_hemisphere must be in [1, 44]"),
    ("superlanes", 2.0, "superlanes must be an int"),
    ("vxm_groups", 0, "vxm_groups must be in [1, 16], got 0"),
    ("vxm_groups", 17, "vxm_groups must be in [1, 16], got 17"),
    ("superlanes", True, "superlanes must be an int"),
    ("vxm_imem_depth", 8, "vxm_imem_depth must be 0 (= imem_depth) or in [16, 262144], got 8"),
    ("mxm_imem_depth", 1 << 19, "mxm_imem_depth must be 0 (= imem_depth) or in [16, 262144]"),
    ("vxm_imem_depth", 3000, "vxm_imem_depth must be a power of two in [16, 262144]"),
])
def test_validation_names_field_and_range(field, value, needle):
    with pytest.raises(ValueError, match=r".*") as exc:
        dataclasses.replace(PRESETS["small"], **{field: value})
    assert needle in str(exc.value)


def test_frozen_and_replace_revalidates():
    small = PRESETS["small"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.superlanes = 3
    assert small.replace(superlanes=3).vector_length == 48
    with pytest.raises(ValueError):
        small.replace(superlanes=99)


def test_a_variant_is_named_after_what_it_changes():
    """replace() without a name names the variant as get_config spells it, so that it
    never reports itself as its preset (and the name gives the same config back)."""
    small = PRESETS["small"]
    cases = {
        small.replace(vxm_groups=2): "small:vxm_groups=2",
        small.replace(vxm_groups=2).replace(mem_depth=1024): "small:vxm_groups=2,mem_depth=1024",
        get_config("tiny:vxm_groups=2").replace(vxm_groups=3): "tiny:vxm_groups=3",
        get_config("tiny:vxm_groups=2").with_links(): "tiny:vxm_groups=2+c2c",
        get_config("layer").with_links().replace(c2c_links=2): "layer:c2c_links=2",
        small.replace(vxm_groups=1): "small",  # nothing changed
        small.replace(name="mine", vxm_groups=2): "mine",  # a name given is kept
    }
    for cfg, name in cases.items():
        assert cfg.name == name
        if name != "mine":
            assert get_config(name) == cfg
    with pytest.raises(ValueError, match=r"^config 'tiny:vxm_groups=2,vxm_groups=3': "
                                         r"vxm_groups is given twice$"):
        get_config("tiny:vxm_groups=2,vxm_groups=3")


def test_stable_hash_depends_on_hardware_only():
    small = PRESETS["small"]
    assert small.stable_hash() == TspConfig.from_dict(small.to_dict()).stable_hash()
    assert small.stable_hash() == small.replace(name="other").stable_hash()
    assert small.stable_hash() != small.replace(mem_depth=1024).stable_hash()
    assert len({c.stable_hash() for c in PRESETS.values()}) == len(PRESETS)


def test_unknown_names_are_reported():
    with pytest.raises(ValueError, match="unknown config 'huge'; presets are: tiny, tiny3, small"):
        get_config("huge")
    with pytest.raises(ValueError, match="has no slice 'MEM_W9'"):
        PRESETS["small"].slice("MEM_W9")
    with pytest.raises(ValueError, match="unknown TspConfig field"):
        TspConfig.from_dict({"superlane": 2})
