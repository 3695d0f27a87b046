"""The PySide6 + pyqtgraph application (connect, start, watch live, stop safely)."""
