"""Pure analysis over polars frames and numpy arrays.

Nothing here imports Qt, pyserial or pyvisa, so recorded runs and vendor files can be reanalysed
on a machine with only the base install.
"""
