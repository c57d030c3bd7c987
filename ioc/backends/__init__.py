"""Instrument backends under the IOC: rig files, drivers and the hardware rig."""

from .hardware import HardwareRig
from .rigfile import RigFile, RigFileError, load_rig_file

__all__ = ["HardwareRig", "RigFile", "RigFileError", "load_rig_file"]
