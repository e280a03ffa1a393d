"""Tests of model behaviour: builders, the input pipeline, calibration, training, search, scores."""
