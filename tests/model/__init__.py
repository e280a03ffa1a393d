"""Tests of model behaviour: builders, fitting, calibration, training, search, scores."""
