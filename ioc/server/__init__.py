"""Channel Access layer: caproto PVGroups mapping PVs onto the rig backend."""

from .context import RigContext
from .groups import RigIOC

__all__ = ["RigContext", "RigIOC"]
