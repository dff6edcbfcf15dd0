"""MIG layout validation against the placement model, on every catalog GPU with MIG.

The oracle below enumerates every set of non-overlapping instances a GPU can hold (each at one of its
profile's allowed starts), independently of config/mig.py's search. The validator must accept exactly
the layouts the oracle finds: exhaustively over all per-profile counts up to each profile's maximum (and
one past it), and through the whole stack-file pipeline (`validate --file`) for generated stacks.
"""

from __future__ import annotations

import itertools
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import ConfigError, load_stack_file
from config.catalog import CATALOG, MigGeometry, MigProfile, mig_models
from config.mig import layout_text, place, why_not
from config.presets import apply_preset

MIG_MODELS = [m.name for m in mig_models()]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR x"


@cache
def accepted(model: str) -> frozenset[frozenset[tuple[str, int]]]:
    """Every layout (as a set of (profile, count)) that the hardware can hold, by brute force."""
    geometry = CATALOG[model].mig
    assert geometry is not None
    options = [(p, s) for p in geometry.profiles for s in p.starts if s + p.memory_slices <= geometry.memory_slices]
    found: set[frozenset[tuple[str, int]]] = set()

    def grow(first: int, used: int, chosen: list[MigProfile]) -> None:
        counts = Counter(p.name for p in chosen)
        limits_ok = all(counts[p.name] <= p.max_count for p in geometry.profiles)
        media = sum(1 for p in chosen if p.media_extensions)
        if not limits_ok or media > 1:
            return
        if chosen:
            found.add(frozenset(counts.items()))
        for i in range(first, len(options)):
            profile, start = options[i]
            mask = ((1 << profile.memory_slices) - 1) << start
            if not used & mask:
                grow(i + 1, used | mask, [*chosen, profile])

    grow(0, 0, [])
    return frozenset(found)


def all_layouts(geometry: MigGeometry) -> list[dict[str, int]]:
    """Every layout of up to one instance more than the GPU has memory slices (each instance takes at least
    one): all that can fit, and every way of asking for one too many."""
    names = geometry.profile_names
    return [
        dict(Counter(combo))
        for k in range(1, geometry.memory_slices + 2)
        for combo in itertools.combinations_with_replacement(names, k)
    ]


@pytest.mark.parametrize("model", MIG_MODELS)
def test_validator_agrees_with_the_placement_model_on_every_layout(model: str) -> None:
    geometry = CATALOG[model].mig
    assert geometry is not None
    good = accepted(model)
    checked = 0
    for layout in all_layouts(geometry):
        fits = frozenset(layout.items()) in good
        assert (why_not(geometry, layout) is None) == fits, (model, layout, why_not(geometry, layout))
        checked += 1
    assert checked > 100 and len(good) > 10


@pytest.mark.parametrize("model", MIG_MODELS)
def test_every_accepted_layout_gets_a_real_placement(model: str) -> None:
    geometry = CATALOG[model].mig
    assert geometry is not None
    for layout in accepted(model):
        placed = place(geometry, dict(layout))
        assert placed is not None
        slices = [s for p in placed for s in range(p.start, p.start + p.size)]
        assert len(slices) == len(set(slices)) and max(slices) < geometry.memory_slices
        for p in placed:
            profile = geometry.profile(p.profile)
            assert profile is not None and p.start in profile.starts and p.size == profile.memory_slices
        assert Counter(p.profile for p in placed) == Counter(dict(layout))
        # Compute slices are never the binding limit once memory slices are placed: a 1g never starts at 7.
        compute = sum(
            p.compute_slices for p in geometry.profiles for name, c in layout if p.name == name for _ in range(c)
        )
        assert compute <= geometry.compute_slices


def test_known_layouts_from_nvidia_documents() -> None:
    h100 = CATALOG["h100-80gb"].mig
    a30 = CATALOG["a30"].mig
    assert h100 is not None and a30 is not None
    fits = [
        {"1g.10gb": 7},  # seven 1g leave slice 7 unused
        {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2},  # mig-parted's all-balanced for the 80GB class
        {"4g.40gb": 1, "3g.40gb": 1},
        {"3g.40gb": 2},
        {"2g.20gb": 3, "1g.10gb": 1},
        {"1g.20gb": 4},
        {"1g.10gb+me": 1, "1g.10gb": 6},
        {"7g.80gb": 1},
    ]
    refused = [
        {"1g.10gb": 8},
        {"3g.40gb": 2, "1g.10gb": 1},  # 7 compute slices but 9 memory slices
        {"4g.40gb": 1, "1g.10gb": 4},  # 8 memory slices, but 8 compute: the fourth 1g would start at slice 7
        {"4g.40gb": 2},
        {"1g.10gb+me": 2},
        {"7g.80gb": 1, "1g.10gb": 1},
    ]
    assert all(why_not(h100, layout) is None for layout in fits), [why_not(h100, x) for x in fits]
    assert all(why_not(h100, layout) is not None for layout in refused)
    assert why_not(a30, {"1g.6gb": 2, "2g.12gb": 1}) is None  # mig-parted's all-balanced for the A30
    assert "media extensions" in str(why_not(a30, {"1g.6gb+me": 1, "2g.12gb+me": 1}))


def test_the_search_explains_a_layout_no_arrangement_holds() -> None:
    """Sums can fit while placements do not: on a made-up GPU whose 2-slice profile starts only at 0,
    two of them have slices and compute to spare yet never fit."""
    geometry = MigGeometry(
        4, 4, (MigProfile("2g.x", 1, 2, 2, (0,), 2), MigProfile("1g.x", 2, 1, 1, (0, 1, 2, 3), 4)),
        mode_change_needs_reset=False, mode_persists=False, min_driver="",
    )  # fmt: skip
    problem = why_not(geometry, {"2g.x": 2})
    assert problem is not None and problem.startswith("no arrangement fits"), problem
    assert "2g.x needs 2 free slice(s) starting at 0, while the free slices are 2, 3" in problem
    assert why_not(geometry, {"2g.x": 1, "1g.x": 2}) is None


def _stack(tmp: Path, model: str, layout: dict[str, int], gpus_per_node: int = 1) -> Path:
    cluster = {
        "preset": "workstation",
        "name": "mig",
        "ssh": {"public_keys": [KEY]},
        "hosts": [
            {
                "name": "ws1",
                "cpu": {"sockets": 1, "cores_per_socket": 16, "threads_per_core": 2},
                "memory_mib": 131072,
                "reserve": {"cpus": "0,16", "memory_mib": 8192},
                "gpus": [
                    {"address": f"0000:{bus:02x}:00.0", "model": model, "iommu_group": bus} for bus in (0x41, 0xC1)
                ],
            }
        ],
        "compute": [
            {"name": "gpu", "count": 2 // gpus_per_node, "vcpus": 4, "memory_mib": 8192, "gpus_per_node": gpus_per_node}
        ],
        "mig": {"layouts": [{"group": "gpu", "profiles": layout}]},
    }
    path = tmp / f"Pulumi.{model}.yaml"
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": cluster}}))
    return path


@st.composite
def model_and_layout(draw: st.DrawFn) -> tuple[str, dict[str, int]]:
    model = draw(st.sampled_from(MIG_MODELS))
    geometry = CATALOG[model].mig
    assert geometry is not None
    names = draw(st.lists(st.sampled_from(geometry.profile_names), min_size=1, max_size=4, unique=True))
    return model, {name: draw(st.integers(1, 8)) for name in names}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=model_and_layout())
def test_stack_files_with_generated_layouts_validate_as_the_hardware_would(case, tmp_path: Path) -> None:
    model, layout = case
    fits = frozenset(layout.items()) in accepted(model)
    path = _stack(tmp_path, model, layout)
    if fits:
        load_stack_file(path)
    else:
        with pytest.raises(ConfigError) as info:
            load_stack_file(path)
        report = info.value.report()
        geometry = CATALOG[model].mig
        assert geometry is not None
        assert "hyperscaler:cluster.mig.layouts[0].profiles" in report
        assert f"group 'gpu': the layout {layout_text(layout, geometry)} does not fit one" in report
        assert f"({model})" in report


def test_layouts_count_per_gpu(tmp_path: Path) -> None:
    """Two GPUs per node: the layout is per GPU, so 7 x 1g is fine on each of them."""
    load_stack_file(_stack(tmp_path, "a100-80gb", {"1g.10gb": 7}, gpus_per_node=2))


def test_a_stack_replaces_a_named_layout_whole() -> None:
    """Presets merge mappings key by key, except a MIG layout: merging would make one nobody wrote."""
    preset = {"preset": "workstation", "mig": {"named_layouts": {"x": {"1g.10gb": 7}}}}
    from config import presets

    presets.PRESETS["_test"] = {"mig": {"named_layouts": {"x": {"3g.40gb": 1, "2g.20gb": 1}}}}
    try:
        merged = apply_preset({**preset, "preset": "_test"})
    finally:
        del presets.PRESETS["_test"]
    assert merged["mig"]["named_layouts"]["x"] == {"1g.10gb": 7}


def test_catalog_facts() -> None:
    """The catalog's MIG tables: unique names and IDs per GPU, starts inside the GPU, the mode facts by
    generation, and a note on whatever was not seen on the GPU itself."""
    for model in mig_models():
        geometry = model.mig
        assert geometry is not None and model.device_ids
        assert len(set(geometry.profile_names)) == len(geometry.profiles), model.name
        assert len({p.gi_profile_id for p in geometry.profiles}) == len(geometry.profiles), model.name
        for p in geometry.profiles:
            assert all(s + p.memory_slices <= geometry.memory_slices for s in p.starts), (model.name, p.name)
            assert 1 <= p.max_count <= len(p.starts)
        ampere = model.name in ("a30", "a100-40gb", "a100-80gb")
        assert geometry.mode_change_needs_reset is ampere and geometry.mode_persists is ampere, model.name
        assert model.mig_device_filter[0].endswith("10DE") and len(model.mig_device_filter[0]) == 10
    for name in ("h200", "gh200", "gh200-144gb", "h20", "b200", "rtx-pro-6000"):
        assert CATALOG[name].mig is not None and CATALOG[name].mig.unverified, name  # type: ignore[union-attr]
    h100 = CATALOG["h100-80gb"].mig
    assert h100 is not None and [(p.name, p.gi_profile_id) for p in h100.profiles] == [
        ("1g.10gb", 19), ("1g.10gb+me", 20), ("1g.20gb", 15), ("2g.20gb", 14), ("3g.40gb", 9), ("4g.40gb", 5),
        ("7g.80gb", 0),
    ]  # fmt: skip
    assert CATALOG["l40s"].mig is None and CATALOG["rtx-4090"].mig is None
