"""Channel Access layer: caproto PVGroups mapping PVs onto the rig backend."""

from .groups import RigIOC
from .nodelay import NoDelayContext

__all__ = ["NoDelayContext", "RigIOC"]
