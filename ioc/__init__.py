"""Server side of ssb-bluesky: the simulated ASSB rig and its caproto IOC.

``ssb_ioc.sim`` holds the physics (plain Python/numpy, no EPICS);
``ssb_ioc.server`` maps it onto Channel Access process variables.
This package never imports the client layers (ssb_devices, ssb_plans).
"""
