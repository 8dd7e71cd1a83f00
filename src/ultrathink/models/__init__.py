"""Models: the ensemble classifier, walk-forward training, the versioned registry.

Submodules are imported explicitly (``from ultrathink.models.ensemble import ...``) so that
importing one (e.g. compiled inference) does not pay for the others' dependencies.
"""
