"""Physics of the simulated rig: plain Python/numpy, no EPICS, explicit time steps."""

from .cell import Cell, ocv
from .epid import Epid
from .loadcell import LoadCell
from .params import CellFileError, RigParams, load_cell_file, preset_names
from .press import Mode, Press
from .rig import Rig, RigError

__all__ = [
    "Cell",
    "CellFileError",
    "Epid",
    "LoadCell",
    "Mode",
    "Press",
    "Rig",
    "RigError",
    "RigParams",
    "load_cell_file",
    "ocv",
    "preset_names",
]
