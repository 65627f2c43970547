"""Devices: sources behind one protocol (serial, ble, replay, sim, loop); pure parsers apart from I/O."""
