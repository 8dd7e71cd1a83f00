"""Pre-trade risk: checks, trading state and stable reason codes."""
