"""A lab of several rigs on one machine: IOCs, PostgreSQL, a Tiled server, Redis, one
bluesky-queueserver RE Manager per rig behind bluesky-httpserver, and a live overview
page. ``ssb lab up | status | down``."""
