"""The serving room: ``ultrathink serve``, an HTTP model server over the registry.

See docs/serving.md.
"""
