"""Servo-hydraulic press with its pressure loop: the fast part of the rig.

Mechanics (forces in N, positions in um, pressures in MPa):

* The servo valve sets the piston speed: ``dv/dt = (u - v) / valve_time_constant`` with
  ``u`` the valve command (the loop output); the piston position ``y`` integrates ``v``.
  Above ``max_force`` the piston stalls.
* The frame (and oil column) and the stack are springs in series. With ``s`` the stack's
  swelling, ``F = k (y + s)`` while in contact (``F >= 0``), ``k = 1 / (1/k_frame +
  1/k_stack)``; the platen sits at ``z = y - F / k_frame`` and the gap between platens is
  ``stack_thickness - z``.

Modes: ``OFF`` parks the piston at ``retract_position`` (no force), ``GAP`` locks the
piston (the valve closes; pressure follows the cell), ``PRESSURE`` runs the :class:`Epid`
loop on the load-cell pressure towards a working setpoint that ramps to the target at
``ramp_rate`` (0 = step).

Integration: the loop runs at its own period (1 kHz by default), whatever the speed
factor. Where the loop is linear (in contact, output well inside its limits, error
small) ``N`` periods are applied at once with the exact N-fold product of the one-period
map, and the load-cell noise that entered the loop over those periods is drawn from its
exact accumulated covariance. Elsewhere (approach, saturation, large steps) every period
is stepped. Both paths give the same trajectory in distribution; the tests check it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..core.press import Mode, PressControl
from ..params import RigParams
from .loadcell import LoadCell

__all__ = ["Mode", "Press"]

# Indices of the linear state vector.
Y, V, INTEGRAL, ERR, OVAL, S, SDOT, SP, SPRATE, BIAS, ONE = range(11)
_DYNAMIC = slice(Y, OVAL + 1)
_FINE_BLOCK = 10  # periods between supervisor checks while every period is stepped


class Press(PressControl):
    """The press's control over its platen mechanics."""

    def __init__(self, params: RigParams, load_cell: LoadCell):
        super().__init__(params)
        p = params
        self.load_cell = load_cell
        self.k_frame = p.press.frame_stiffness  # kN/mm == N/um
        self.k_stack = p.mechanics.stiffness * self.area_mm2  # MPa/um * mm^2 = N/um
        self.k = 1.0 / (1.0 / self.k_frame + 1.0 / self.k_stack)
        self.spring_compliance = 0.0  # um/N of a spring between piston and stack (0: none)
        self.y = p.press.retract_position
        self.v = 0.0
        self.swelling = 0.0
        self.swelling_rate = 0.0
        self.steps = 0  # loop periods simulated so far
        self.allow_linear = True  # False: step every loop period (the reference path)
        self.on_period: Callable[[], None] | None = None  # called after every period if set
        self._linear_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # --- readbacks ----------------------------------------------------------------
    @property
    def true_force(self) -> float:
        return max(self.k * (self.y + self.swelling), 0.0)

    @property
    def true_pressure(self) -> float:
        return self.true_force / self.area_mm2

    @property
    def platen_position(self) -> float:
        """Platen travel from first contact with the unswollen stack (um, + = closing)."""
        return self.y - self.true_force * (1.0 / self.k_frame + self.spring_compliance)

    @property
    def gap(self) -> float:
        """Distance between the platens = stack thickness under load (um)."""
        return self.params.mechanics.stack_thickness - self.platen_position

    @property
    def time(self) -> float:
        return self.steps * self.period

    # --- commands -----------------------------------------------------------------
    def _mode_changed(self) -> None:
        self.v = 0.0  # the valve closes on every change of mode

    def set_spring(self, stiffness: float | None) -> None:
        """Put a spring of ``stiffness`` N/um between the piston and the stack (a
        spring-loaded fixture when the piston is locked; None = rigid), keeping the
        present force."""
        force = self.true_force
        self.spring_compliance = 1.0 / stiffness if stiffness else 0.0
        self.k = 1.0 / (1.0 / self.k_frame + 1.0 / self.k_stack + self.spring_compliance)
        self._linear_cache.clear()
        if force > 0:
            self.y = force / self.k - self.swelling

    # --- integration --------------------------------------------------------------
    def run(self, n: int, check: Callable[[], None]) -> None:
        """Advance ``n`` loop periods; after each block update the settle state and call
        ``check()`` (the rig's interlocks, which may change the mode)."""
        chunk = max(1, round(self.params.simulation.chunk / self.period))
        while n > 0:
            if self.mode != Mode.PRESSURE:
                done = self._run_open_loop(n)
            elif self.allow_linear and self._linear_ok():
                # Settling is timed in chunks; a ramp or a settled hold runs to the block end.
                m = n if (self.settled or self.ramping) else min(n, chunk)
                m = min(m, self._steps_to_ramp_end())
                done = m if self._run_linear(m) else self._run_fine(min(m, _FINE_BLOCK))
            else:
                done = self._run_fine(min(n, _FINE_BLOCK))
            n -= done
            self._update_settle()
            check()

    def _run_open_loop(self, n: int) -> int:
        if self.on_period is None:
            return self._open_loop(n)
        for _ in range(n):  # every period recorded: step them one by one
            self._open_loop(1)
            self.on_period()
        return n

    def _open_loop(self, n: int) -> int:
        dt = n * self.period
        if self.mode == Mode.OFF:
            retract = self.params.press.retract_position
            self.y = max(self.y - self.params.press.max_speed * dt, retract)
        self.swelling += self.swelling_rate * dt
        self.steps += n
        self.pressure = self.load_cell.report(self.true_force) / self.area_mm2
        return n

    def _steps_to_ramp_end(self) -> int:
        if not self.ramping or self.ramp_rate <= 0:
            return 1 << 62
        return max(
            1, math.floor(abs(self.target - self.setpoint) / (self.ramp_rate * self.period))
        )

    def _run_fine(self, n: int) -> int:
        """Step every loop period (the reference integration)."""
        ts, tau = self.period, self.params.press.valve_time_constant
        a = math.exp(-ts / tau)
        b1 = tau * (1.0 - a)
        b2 = ts - b1
        fmax = self.params.press.max_force * 1e3
        lc, pid, area = self.load_cell, self.pid, self.area_mm2
        noise = lc.rng.normal(0.0, lc.noise, n) if lc.noise > 0 else np.zeros(n)
        for i in range(n):
            force = self.true_force
            self.pressure = lc.report(force, float(noise[i])) / area
            self._advance_setpoint(ts)
            u = pid.update(self.setpoint, self.pressure, ts)
            dy = b1 * self.v + b2 * u
            if force >= fmax and dy > 0:  # actuator stalls at its force capacity
                dy, u, self.v = 0.0, min(u, 0.0), min(self.v, 0.0)
            self.y += dy
            self.v = a * self.v + (1.0 - a) * u
            self.swelling += self.swelling_rate * ts
            if self.on_period is not None:
                self.steps += 1
                self.on_period()
        if self.on_period is None:
            self.steps += n
        return n

    # --- linear path --------------------------------------------------------------
    def _linear_ok(self) -> bool:
        pid = self.pid
        if not (pid.fbon and pid._fbop) or pid.mdt > self.period:
            return False
        span = pid.drvh - pid.drvl
        mid = 0.5 * (pid.drvh + pid.drvl)
        force = self.k * (self.y + self.swelling)
        return (
            abs(pid.oval - mid) < 0.25 * span
            and abs(pid.kp * pid.err) < 0.1 * span
            and abs(pid.i - mid) < 0.4 * span
            # well clear of losing contact (F = 0 is the one non-linearity in the loop)
            and max(0.002 * self.load_cell.capacity, 20 * self.load_cell.noise) < force
            and force < 0.95 * self.load_cell.full_scale
            and force < 0.95 * self.params.press.max_force * 1e3
        )

    def _one_period_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Affine map X' = M X + g n of one loop period in the linear regime."""
        pid, ts, tau = self.pid, self.period, self.params.press.valve_time_constant
        a = math.exp(-ts / tau)
        b1, b2 = tau * (1 - a), ts - tau * (1 - a)
        c = self.k / self.area_mm2
        kp, ki, kd = pid.kp, pid.ki, pid.kd
        e = np.zeros(11)  # error row: sp + sprate*ts - c*(y + s) - bias - n
        e[[SP, SPRATE, Y, S, BIAS]] = [1.0, ts, -c, -c, -1.0]
        gain = kp * (1.0 + ki * ts + kd / ts)
        u = gain * e
        u[INTEGRAL] += 1.0
        u[ERR] -= kp * kd / ts
        m = np.zeros((11, 11))
        m[Y] = b2 * u
        m[Y, Y] += 1.0
        m[Y, V] += b1
        m[V] = (1 - a) * u
        m[V, V] += a
        m[INTEGRAL] = kp * ki * ts * e
        m[INTEGRAL, INTEGRAL] += 1.0
        m[ERR] = e
        m[OVAL] = u
        m[S, S], m[S, SDOT] = 1.0, ts
        m[SDOT, SDOT] = m[SP, SP] = m[SPRATE, SPRATE] = m[BIAS, BIAS] = m[ONE, ONE] = 1.0
        m[SP, SPRATE] = ts
        g = np.zeros(11)  # response to measurement noise n (MPa): e gets -n
        g[Y], g[V], g[INTEGRAL], g[ERR], g[OVAL] = (
            -b2 * gain,
            -(1 - a) * gain,
            -kp * ki * ts,
            -1,
            -gain,
        )
        return m, g

    def _n_period_map(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """M^n and a Cholesky factor of the noise covariance accumulated over n periods."""
        pid = self.pid
        key = (n, pid.kp, pid.ki, pid.kd, self.period, self.load_cell.noise)
        hit = self._linear_cache.get(key)
        if hit is not None:
            return hit
        m1, g = self._one_period_map()
        sigma = self.load_cell.noise / self.area_mm2
        power, q_power = m1, sigma**2 * np.outer(g, g)
        mn, qn = np.eye(11), np.zeros((11, 11))
        k = n
        while k:  # binary powering: (M^a, Q_a) then (M^b, Q_b) -> M^(a+b), M^b Q_a M^bT + Q_b
            if k & 1:
                qn = power @ qn @ power.T + q_power
                mn = power @ mn
            q_power = power @ q_power @ power.T + q_power
            power = power @ power
            k >>= 1
        block = qn[_DYNAMIC, _DYNAMIC]
        # Rank-deficient (one noise source drives five states): factor via eigenvalues.
        eigval, eigvec = np.linalg.eigh(block)
        chol = eigvec * np.sqrt(np.clip(eigval, 0.0, None))
        if len(self._linear_cache) > 64:
            self._linear_cache.clear()
        self._linear_cache[key] = (mn, chol)
        return mn, chol

    def _run_linear(self, n: int) -> bool:
        """Apply n periods at once; False (state untouched) if the result left the
        linear regime, so the caller steps them one by one instead."""
        pid, lc = self.pid, self.load_cell
        rate = 0.0
        if self.ramping and self.ramp_rate > 0:
            rate = math.copysign(self.ramp_rate, self.target - self.setpoint)
        x = np.array(
            [
                self.y,
                self.v,
                pid.i,
                pid.err,
                pid.oval,
                self.swelling,
                self.swelling_rate,
                self.setpoint,
                rate,
                lc.bias / self.area_mm2,
                1.0,
            ]
        )
        mn, chol = self._n_period_map(n)
        x = mn @ x
        if lc.noise > 0:
            x[_DYNAMIC] += chol @ lc.rng.standard_normal(chol.shape[0])
        saved = (self.y, self.v, pid.i, pid.err, pid.oval, self.swelling, self.setpoint)
        self.y, self.v, pid.i, pid.err, pid.oval, self.swelling = (float(v) for v in x[: S + 1])
        self.setpoint = float(x[SP]) if self.ramping else self.setpoint
        if rate and (self.target - self.setpoint) * rate <= 0:
            self.setpoint = self.target
        if not self._linear_ok():
            self.y, self.v, pid.i, pid.err, pid.oval, self.swelling, self.setpoint = saved
            return False
        self.steps += n
        self.pressure = lc.report(self.true_force) / self.area_mm2
        return True
