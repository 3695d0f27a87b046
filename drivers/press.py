"""A motorised cell press with a load cell, closed-loop on force: stack pressure as a set point.

Lab presses for solid-state cells (a stepper- or servo-driven screw on a die or a pouch fixture,
a strain-gauge load cell under the cell) are mostly built around a small motion controller
with an ASCII serial console; there is no industry standard. This driver speaks the plain line
protocol below, which such a controller's firmware implements in a few lines (and which the
simulator in ``cellbench.drivers.sim.press`` speaks): 115200 baud 8-N-1, commands and replies
end in LF.

- ``*IDN?`` -> ``"<maker>,<model>,<serial>,<firmware>"``.
- ``FORCE?`` -> load-cell reading, N (compression positive).
- ``SETF <N>`` -> ``OK``: drive to this force and hold it (closed loop on the load cell).
- ``SETF?`` -> the force set point, N.
- ``RATE <N/s>`` -> ``OK``; ``RATE?``: how fast the press changes the force.
- ``HOLD`` -> ``OK``: stop the motor where it is (the load stays on the cell).
- ``STAT?`` -> ``MOVING``, ``AT_SETPOINT`` or ``HOLD``.
- ``CAP?`` -> the load cell's rated capacity, N.
- An error answers ``ERR <code> <text>`` (1: unknown command, 2: value out of range).

Stack pressure = force / area (``area_cm2``, the cell's electrode area: 1 MPa on 1 cm^2 is
100 N). The safe state is ``HOLD``: an abort stops the motor but does not unload the cell
(dropping the stack pressure of a solid-state cell under current can be what damages it).
"""

from __future__ import annotations

from cellbench.drivers.errors import ArgumentRangeError, InstrumentCommandError
from cellbench.drivers.line_driver import LineDriver

NEWTON_PER_MPA_CM2 = 100.0  # 1 MPa on 1 cm^2


class MotorisedPress(LineDriver):
    """A press that sets and reads stack pressure (roles ``press`` and ``pressure``).

    Args:
        area_cm2: area the force acts on, cm^2 (required for the pressure methods).
        rate_newton_per_second: force ramp rate to program at connection (None: keep the
            controller's).
    """

    model = "press"
    read_termination = "\n"
    write_termination = "\n"
    baud_rate = 115200

    def __init__(
        self,
        address: str,
        *,
        area_cm2: float | None = None,
        rate_newton_per_second: float | None = None,
        **kwargs,
    ):
        super().__init__(address, **kwargs)
        self.area_cm2 = (
            None if area_cm2 is None else self.check_range("area_cm2", area_cm2, 1e-4, 1e4, "cm^2")
        )
        self.capacity_newton = self._number(self._checked("CAP?"), "CAP?")
        if rate_newton_per_second is not None:
            self.set_rate_newton_per_second(rate_newton_per_second)

    def _checked(self, command: str) -> str:
        reply = self._query(command).strip()
        if reply.startswith("ERR"):
            raise InstrumentCommandError(
                f"press reports {reply}",
                instrument=self.name,
                address=self.address,
                command=command,
            )
        return reply

    def _ok(self, command: str) -> None:
        reply = self._checked(command)
        if reply != "OK":
            raise self._reply_error(f"expected OK, got {reply!r}", command)

    def _area(self) -> float:
        if self.area_cm2 is None:
            raise ArgumentRangeError(
                "area_cm2 is not set: give the cell area in the instrument options",
                instrument=self.name,
                address=self.address,
            )
        return self.area_cm2

    def identify(self) -> str:
        return self._checked("*IDN?")

    def read_force_newton(self) -> float:
        """Load-cell reading, N."""
        return self._number(self._checked("FORCE?"), "FORCE?")

    def set_force_newton(self, newton: float) -> None:
        """Drive to ``newton`` and hold it; out of the load cell's range is an error."""
        value = self.check_range("force set point", newton, 0.0, self.capacity_newton, "N")
        self._ok(f"SETF {value:.6g}")

    def read_pressure_megapascal(self) -> float:
        """Stack pressure = force / area, MPa."""
        return self.read_force_newton() / (self._area() * NEWTON_PER_MPA_CM2)

    def set_pressure_megapascal(self, megapascal: float) -> None:
        """Drive to this stack pressure (force = pressure x area) and hold it."""
        self.set_force_newton(megapascal * self._area() * NEWTON_PER_MPA_CM2)

    def set_rate_newton_per_second(self, rate: float) -> None:
        value = self.check_range("rate", rate, 1e-3, 1e5, "N/s")
        self._ok(f"RATE {value:.6g}")

    def status(self) -> str:
        """``MOVING``, ``AT_SETPOINT`` or ``HOLD``."""
        return self._checked("STAT?")

    def hold(self) -> None:
        """Stop the motor where it is; the load stays on."""
        self._ok("HOLD")

    def safe_state(self) -> None:
        """Stop moving (the load stays: see the module docstring)."""
        self.hold()
