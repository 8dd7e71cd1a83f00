"""Portfolio: positions, cash, PnL, round-trip trades and performance metrics."""
