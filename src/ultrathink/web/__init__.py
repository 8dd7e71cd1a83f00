"""Operator surfaces of a running session: the localhost control API (``control_api``).

This package module stays import-light (no FastAPI/uvicorn): the server stack loads only
where a session serves its endpoint.
"""
