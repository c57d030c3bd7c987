"""What the instrument and its clients both know, in one place: imported by the IOC and
by the client layers, importing nothing of either (nor any library)."""
