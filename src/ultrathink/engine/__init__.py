"""Engine: wiring and the kernel loop shared by backtest and paper trading."""
