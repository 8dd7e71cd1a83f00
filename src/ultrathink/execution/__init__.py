"""Execution: order state machine, broker interface, paper broker."""
