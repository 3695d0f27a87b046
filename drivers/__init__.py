"""Instrument transports (serial, VISA), one module per instrument family, and discovery."""
