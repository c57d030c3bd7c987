"""Study plans end to end at 5000x, answers read back from the catalog."""

import re

import numpy as np
import pytest

from ssb_analysis.impedance import fit_power_law, interfacial_resistance
from ssb_analysis.report import write_report
from ssb_analysis.stability import Criteria, evaluate_study
from ssb_plans.demo import DEMO_CELL
from ssb_plans.studies import minimum_pressure_study, pressure_impedance_scan, rate_capability

CELL = {**DEMO_CELL, "cell_id": "STUDY-1"}


def test_power_law_fit_recovers_a_known_exponent_and_refuses_too_few_points():
    p = np.array([25.0, 50.0, 100.0, 200.0])
    law = fit_power_law(p, 30 * (p / 100) ** -0.5 * (1 + 0.01 * np.array([1, -1, 1, -1])))
    assert law.exponent == pytest.approx(-0.5, abs=0.01)
    assert 0 < law.exponent_err < 0.02 and law.r_ref == pytest.approx(30, rel=0.02)
    with pytest.raises(ValueError, match="three or more"):
        fit_power_law([50, 100], [40, 30])
    assert interfacial_resistance([1e5, 1e3, 1.0], [20.1, 35.0, 50.0]) == pytest.approx(29.9)


def test_pressure_impedance_scan_finds_the_cells_exponent(session, fast_rig, tmp_path):
    fast_rig.load_cell.tare().wait(10)
    (uid,) = session.RE(pressure_impedance_scan(fast_rig, [25, 50, 100, 150], settle=30))
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    resistance = run["resistance"].read()
    p = resistance["resistance_pressure"].values
    r = resistance["resistance_r_int"].values
    assert p == pytest.approx([25, 50, 100, 150], abs=0.5)
    assert r[0] == pytest.approx(60.0, rel=0.03)  # si-nmc: 30 ohm at 100 MPa, P^-0.5
    assert np.all(np.diff(r) < 0)  # contact improves with pressure
    fit = run["fit"].read()
    assert fit["fit_exponent"].values[0] == pytest.approx(-0.5, abs=0.02)
    assert fit["fit_r_100"].values[0] == pytest.approx(30.0, rel=0.03)
    assert run["resistance"].descriptors[0]["data_keys"]["resistance_r_int"]["units"] == "ohm"
    assert len(run["impedance"].read()["frequency"]) == 4 * 51
    page = write_report(run, tmp_path)
    text = page.read_text()
    assert "n = -0.5" in text
    assert (page.parent / "impedance.png").stat().st_size > 10_000
    # a ladder is summed up per level: one deviation over four pressures means nothing
    assert "pressure deviation RMS" not in text
    for level in (25, 50, 100, 150):
        assert f"| at {level} MPa (" in text, text


def test_rate_capability_capacity_falls_with_rate(session, fast_rig):
    (uid,) = session.RE(rate_capability(fast_rig, [0.2, 1.0, 4.0], pressure=100.0))
    rc = session.catalog[uid]["rate_capability"].read()
    capacity = rc["rate_capability_capacity"].values
    assert rc["rate_capability_c_rate"].values == pytest.approx([0.2, 1.0, 4.0])
    assert capacity[0] == pytest.approx(2.0, rel=0.1)
    assert capacity[0] > capacity[1] > capacity[2]  # ohmic + polarisation losses
    assert rc["rate_capability_retention"].values[0] == pytest.approx(1.0)
    assert np.all(np.abs(rc["rate_capability_pressure"].values - 100.0) < 0.5)


def test_scans_refuse_bad_input_before_a_run(session, fast_rig):
    count = len(session.catalog)
    with pytest.raises(ValueError, match="three or more"):
        session.RE(pressure_impedance_scan(fast_rig, [50, 100]))
    with pytest.raises(ValueError, match=r"line 5.*300 MPa outside"):
        session.RE(pressure_impedance_scan(fast_rig, [50, 100, 300]))
    with pytest.raises(ValueError, match="positive C-rates"):
        session.RE(rate_capability(fast_rig, [1.0, -2.0], pressure=100.0))
    with pytest.raises(ValueError, match="upper: levels above the highest of pressures"):
        session.RE(minimum_pressure_study(fast_rig, [30, 20], upper=[25, 40]))
    assert len(session.catalog) == count


def critical_cell(tmp_path, critical: float) -> str:
    """The si-nmc preset with another critical pressure (below it, voids stay)."""
    from importlib import resources

    text = resources.files("ssb_ioc").joinpath("presets/si-nmc.toml").read_text()
    text = re.sub(r'critical_pressure = "[^"]+"', f'critical_pressure = "{critical} MPa"', text)
    path = tmp_path / f"si-critical-{critical:g}.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "critical, levels, expected",
    [(10.0, [40, 30, 20, 15, 10], 15.0), (25.0, [45, 40, 35, 30, 25, 20], 30.0)],
)
def test_minimum_pressure_study_finds_the_critical_pressure(
    session, ca_context, tmp_path, critical, levels, expected
):
    from conftest import connected_rig, start_ioc
    from tiled.queries import Key

    ioc = start_ioc(ca_context, speed=5000.0, cell=critical_cell(tmp_path, critical))
    rig = connected_rig(ioc.prefix)
    try:
        rig.load_cell.tare().wait(10)
        session.RE(minimum_pressure_study(rig, levels))  # stops at the first failure
    finally:
        rig.destroy()
        ioc.stop()
    summary = session.catalog[-1]
    study_id = summary.start["study_id"]
    assert summary.start["study_role"] == "summary"
    assert summary.start["minimum_stable_pressure"] == pytest.approx(expected, abs=0.5)
    # within one pressure step of the cell's critical pressure, from the catalog alone
    verdicts, window = evaluate_study(session.catalog, study_id)
    minimum = window.minimum
    assert minimum == pytest.approx(expected, abs=0.5)
    assert window.lower_bound and not window.upper_bound  # Si: no shorts at high pressure
    assert summary.start["maximum_stable_pressure"] is None
    assert abs(minimum - critical) <= 5.0 + 0.5  # one step, measured pressure
    assert len(session.catalog.search(Key("study_id") == study_id)) == len(verdicts) + 1
    failing = [v for v in verdicts if v.pressure <= critical + 0.5]  # at the critical pressure
    assert len(failing) == 1 and not failing[0].stable  # the study stopped there
    assert "capacity fades" in failing[0].why and failing[0].mechanism == "contact_loss"
    page = write_report(summary, tmp_path)
    assert f"minimum stable pressure {expected:.1f} MPa" in page.read_text()
    assert (page.parent / "study.png").stat().st_size > 10_000
    # stricter thresholds re-judge the same data
    _, strict = evaluate_study(session.catalog, study_id, Criteria(max_fade_per_cycle=1e-6))
    assert strict.minimum is None or strict.minimum >= minimum


def test_lithium_metal_study_finds_the_upper_bound_of_the_window(session, ca_context, tmp_path):
    """li-nmc: Li creeps into the separator above 25 MPa (its cell file) and soft-shorts;
    after the descent the study probes upwards until a level shorts."""
    from conftest import connected_rig, start_ioc

    ioc = start_ioc(ca_context, speed=5000.0, cell="li-nmc")
    rig = connected_rig(ioc.prefix)
    try:
        rig.load_cell.tare().wait(10)
        session.RE(minimum_pressure_study(rig, [20, 15], upper=[25, 30, 35, 40]))
    finally:
        rig.destroy()
        ioc.stop()
    summary = session.catalog[-1]
    verdicts, window = evaluate_study(session.catalog, summary.start["study_id"])
    by_pressure = {round(v.pressure): v for v in verdicts}
    shorted = [p for p, v in by_pressure.items() if v.mechanism == "soft_short"]
    assert len(shorted) == 1 and max(by_pressure) == shorted[0]  # the probe stopped there
    assert "soft short" in by_pressure[shorted[0]].why
    # at and below 25 MPa no short can grow; the first level above is borderline within
    # two cycles (it may pass, or fail on fade or charge), so the bound is to one step
    assert shorted[0] > 25 and all(v.stable for p, v in by_pressure.items() if p <= 25)
    assert window.upper_bound and 25.0 - 0.5 <= window.maximum <= 30.0 + 0.5  # one step
    assert summary.start["maximum_stable_pressure"] == pytest.approx(window.maximum)
    assert summary.start["minimum_stable_pressure"] == pytest.approx(15.0, abs=0.5)
    assert not window.lower_bound  # the lowest level tested was still stable
    levels = summary["levels"].read()
    assert str(levels["levels_mechanism"].values[-1]) == "soft_short"


def test_operating_window_from_verdicts_in_any_order():
    from ssb_analysis.stability import Verdict, operating_window

    def v(p, mechanism):
        return Verdict(p, 0.0, 1.0, 0.0, mechanism == "stable", mechanism, mechanism)

    verdicts = [v(20, "stable"), v(40, "soft_short"), v(5, "contact_loss"), v(30, "stable")]
    verdicts += [v(10, "stable"), v(35, "soft_short")]
    window = operating_window(verdicts)
    assert (window.minimum, window.maximum) == (10, 30)
    assert window.upper_bound and window.lower_bound
    assert operating_window([v(20, "stable"), v(10, "stable")]).upper_bound is False
    none = operating_window([v(20, "soft_short"), v(10, "contact_loss")])
    assert none.minimum is None and none.maximum is None
    # a borderline level above the window may fail as either mechanism
    edge = operating_window([v(35, "soft_short"), v(30, "contact_loss"), v(25, "stable")])
    assert (edge.minimum, edge.maximum, edge.upper_bound) == (25, 25, True)


def test_study_figure_reads_a_summary_stored_before_verdicts_named_their_mechanism(session):
    """Catalogs keep old runs: a `levels` stream without `mechanism` still plots."""
    import bluesky.preprocessors as bpp

    from ssb_analysis.figures import study_figure
    from ssb_plans.results import ResultStream

    units = {"pressure": "MPa", "fade_per_cycle": "", "coulombic_efficiency": ""}
    units |= {"resistance_growth": "", "stable": ""}
    md = {"study_role": "summary", "minimum_stable_pressure": 20.0}
    md["plan_args"] = {"criteria": {"max_fade_per_cycle": 0.005, "min_coulombic_efficiency": 0.98}}

    @bpp.run_decorator(md=md)
    def old_summary():
        stream = ResultStream("levels", units)
        for p, fade, stable in ((30.0, 0.001, 1), (20.0, 0.002, 1), (10.0, 0.02, 0)):
            yield from stream.emit(
                pressure=p,
                fade_per_cycle=fade,
                coulombic_efficiency=0.99,
                resistance_growth=0.0,
                stable=stable,
            )

    (uid,) = session.RE(old_summary())
    fig = study_figure(session.catalog[uid])
    assert len(fig.axes) == 2 and fig.axes[0].collections  # levels drawn
