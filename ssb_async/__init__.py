"""ophyd-async devices for the rig, beside the ophyd ones of :mod:`ssb_devices`.

The same PVs (:mod:`ssb_contract.pvs`), the enumerations typed as ``StrictEnum`` (checked
against the contract by the tests), over Channel Access (``ca://``, the default) or PV
Access (``pva://`` in the prefix). Moves complete on the IOC's put-completion: the IOC
answers a pressure setpoint when the pressure has settled, and refuses a bad one by
failing the put.
"""

from .enums import PressMode, YesNo
from .rig import LoadCell, Press, Rig

__all__ = ["LoadCell", "Press", "PressMode", "Rig", "YesNo"]
