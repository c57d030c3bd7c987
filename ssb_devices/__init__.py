"""ophyd devices for the pressure-controlled ASSB rig (grows in the devices issue)."""
