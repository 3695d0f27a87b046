"""The simulated cell and the simulated instruments that speak the real wire protocols."""
