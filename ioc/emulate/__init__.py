"""Protocol emulators: the simulated rig behind the wire protocols of real instruments."""

from .emulator import Emulator, EmulatorThread

__all__ = ["Emulator", "EmulatorThread"]
