"""Parameter sweeps (``ultrathink sweep``): grids x datasets x windows on a process pool or Ray."""
