"""A PID loop with the semantics of the EPICS ``epid`` record (std module).

One class for the simulation and for real drivers: call :meth:`Epid.update` once per
sample with the setpoint and the controlled value. Field names follow the record:

* ``kp`` (KP), ``ki`` (KI, integral gain in repeats per second), ``kd`` (KD, seconds);
  P = KP*e, dI = KP*KI*e*dt, D = KP*KD*de/dt, OVAL = P + I + D clamped to DRVL..DRVH.
* ``fbon`` (FBON): with feedback off the output is left alone. Switching it on is
  bumpless: the integral is seeded with the current output (OVAL).
* Anti-windup: the integral only moves while the output is inside its limits, or when
  the change pulls it back inside; the integral itself is kept within DRVL..DRVH.
* ``mdt`` (MDT): samples closer together than this are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Epid:
    kp: float
    ki: float
    kd: float
    drvh: float
    drvl: float
    mdt: float = 0.0
    fbon: bool = False
    oval: float = 0.0  # OVAL, the output
    i: float = 0.0  # I, the integral term (in output units)
    err: float = 0.0  # ERR, the last error
    p: float = 0.0  # P term
    d: float = 0.0  # D term
    _fbop: bool = False  # FBON at the previous update (to detect switch-on)
    _dt_pending: float = 0.0

    def set_feedback(self, on: bool) -> None:
        self.fbon = on

    def update(self, setpoint: float, value: float, dt: float) -> float:
        """One loop iteration; returns the new output OVAL."""
        self._dt_pending += dt
        dt = self._dt_pending
        if dt < self.mdt:
            return self.oval
        self._dt_pending = 0.0
        e = setpoint - value
        if not self.fbon:
            self._fbop = False
            self.err = e
            return self.oval
        de = e - self.err
        self.p = self.kp * e
        di = self.kp * self.ki * e * dt
        inside = self.drvl < self.oval < self.drvh
        if not self._fbop:  # just switched on: bumpless, the integral takes the output
            self.i = self.oval
            de = 0.0
            self._fbop = True
        elif inside or (self.oval >= self.drvh and di < 0) or (self.oval <= self.drvl and di > 0):
            self.i = min(max(self.i + di, self.drvl), self.drvh)
        self.d = self.kp * self.kd * de / dt if dt > 0 else 0.0
        self.err = e
        self.oval = min(max(self.p + self.i + self.d, self.drvl), self.drvh)
        return self.oval
