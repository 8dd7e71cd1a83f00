"""Core: events, enums, ids, clocks and the message bus. Imports nothing else from ULTRATHINK."""
