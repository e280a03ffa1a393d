"""Models: plain Keras builders for the ANN and the CNN, and their Keras Tuner wrapper."""
