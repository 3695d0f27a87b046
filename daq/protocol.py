"""Test protocols: the TOML a technician writes, the step model the engine runs, and its loader.

The public face of two modules: :mod:`cellbench.daq.protocol_model` (the steps, limits and end
conditions, with their one-line summaries) and :mod:`cellbench.daq.protocol_loader`
(:func:`load_protocol`: read and check the whole file, one :class:`ProtocolError` listing every
problem with its file, line and key). ``docs/protocols.md`` is the reference of the file format.
"""

from __future__ import annotations

from cellbench.daq.protocol_loader import ProtocolError, load_protocol, parse_protocol
from cellbench.daq.protocol_model import (
    CC,
    CCCV,
    CCD,
    CV,
    EIS,
    GITT,
    STEP_TYPES,
    Ends,
    Limits,
    Loop,
    LoopUntil,
    Ocv,
    Pressure,
    Protocol,
    Pulse,
    Rest,
    Step,
    Temperature,
    Unresolved,
)
from cellbench.daq.toml_check import Problem

__all__ = [
    "CC",
    "CCCV",
    "CCD",
    "CV",
    "EIS",
    "GITT",
    "STEP_TYPES",
    "Ends",
    "Limits",
    "Loop",
    "LoopUntil",
    "Ocv",
    "Pressure",
    "Problem",
    "Protocol",
    "ProtocolError",
    "Pulse",
    "Rest",
    "Step",
    "Temperature",
    "Unresolved",
    "load_protocol",
    "parse_protocol",
]
