"""Cell files: presets load, and every kind of bad file is refused naming the key."""

import pytest

from ssb_ioc.params import SECTIONS
from ssb_ioc.sim import CellFileError, load_cell_file, preset_names


def write(tmp_path, text):
    path = tmp_path / "cell.toml"
    path.write_text(text)
    return path


def si_text():
    from importlib import resources

    return resources.files("ssb_ioc").joinpath("presets/si-nmc.toml").read_text()


def test_presets_load_with_canonical_units():
    assert {"si-nmc", "li-nmc"} <= set(preset_names())
    p = load_cell_file("si-nmc")
    assert p.cell.area == pytest.approx(0.785)  # cm^2
    assert p.load_cell.capacity == pytest.approx(20.0)  # kN
    assert p.mechanics.stiffness == pytest.approx(2.0)  # MPa/um
    li = load_cell_file("li-nmc")
    assert li.mechanics.anode_expansion == pytest.approx(4.85)


def test_units_are_converted(tmp_path):
    text = si_text().replace('area = "0.785 cm^2"', 'area = "78.5 mm^2"')
    p = load_cell_file(write(tmp_path, text))
    assert p.cell.area == pytest.approx(0.785)


def test_rig_sections_can_be_overridden(tmp_path):
    text = si_text() + '\n[limits]\nmax_setpoint = "150 MPa"\n'
    p = load_cell_file(write(tmp_path, text))
    assert p.limits.max_setpoint == 150.0
    assert p.limits.over_pressure == 225.0  # the rest of the section from the defaults


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('area = "0.785 cm^2"', 'area = "-0.785 cm^2"', "cell.area"),
        ('area = "0.785 cm^2"', "", "cell.area: missing"),
        ('area = "0.785 cm^2"', 'area = "0.785 kg"', "cell.area"),
        ('area = "0.785 cm^2"', "area = 0.785", "cell.area: a unit is required"),
        ('r_bulk = "20 ohm"', 'r_bulk = "20 ohm"\ncolour = "blue"', "electrochemistry.colour"),
        ('chemistry = "nmc-si"', 'chemistry = "lfp"', "cell.chemistry"),
        ('capacity = "2.0 mAh"', 'capacity = "2.0 parsecs"', "cell.capacity"),
        ("[contact]", "[contacts]", "[contacts]"),
        ("initial_soc = 0.0", "initial_soc = 1.5", "cell.initial_soc"),
    ],
)
def test_bad_cell_files_are_refused_naming_the_key(tmp_path, old, new, key):
    text = si_text()
    assert old in text
    with pytest.raises(CellFileError, match=key.replace("[", r"\[")):
        load_cell_file(write(tmp_path, text.replace(old, new, 1)))


def test_inconsistent_limits_are_refused(tmp_path):
    text = si_text() + '\n[limits]\nmax_setpoint = "240 MPa"\n'
    with pytest.raises(CellFileError, match=r"limits\.max_setpoint"):
        load_cell_file(write(tmp_path, text))


def test_not_toml_and_missing_files_are_refused(tmp_path):
    with pytest.raises(CellFileError, match="not valid TOML"):
        load_cell_file(write(tmp_path, "[cell\nname ="))
    with pytest.raises(CellFileError, match="no cell file or preset named 'nope'"):
        load_cell_file("nope")
    with pytest.raises(CellFileError, match="cannot read"):
        load_cell_file(tmp_path / "absent.toml")


def test_every_parameter_is_documented_with_a_comment():
    """Each key of the shipped files carries a unit or a comment saying where it comes from."""
    from importlib import resources

    folder = resources.files("ssb_ioc").joinpath("presets")
    seen = set()
    for item in folder.iterdir():
        for line in item.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key = line.split("=")[0].strip()
                seen.add(key)
    every = {f for cls in SECTIONS.values() for f in cls.__dataclass_fields__}
    assert every <= seen
