"""Bluesky plans for the pressure-controlled ASSB rig (grows in the plans issue)."""
