"""Protocols, the acquisition engine, safety limits, the run store and the command line."""
