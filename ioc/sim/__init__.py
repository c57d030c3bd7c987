"""Physics of the simulated rig: plain Python/numpy, no EPICS, explicit time steps.

The rig's control is :mod:`ssb_ioc.core`'s; the names most used with the simulation are
offered here too.
"""

from ..core.epid import Epid
from ..core.errors import RigError
from ..core.press import Mode
from ..params import CellFileError, RigParams, load_cell_file, preset_names
from .cell import Cell, ocv
from .loadcell import LoadCell
from .press import Press
from .rig import Rig

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
