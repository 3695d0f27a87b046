"""The base layer: errors, the column schema, units and clocks.

Every other part of cellbench may import it; it imports nothing else of cellbench.
"""
