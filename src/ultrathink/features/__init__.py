"""Features: indicators computed both vectorised (research) and incrementally (engine)."""
