"""Keras Tuner for the tune stage: the tracked tuner, distributed roles, the search's identity
and saved state, and the work-arounds for Keras Tuner's internals."""
