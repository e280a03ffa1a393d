"""digit-recognizer: handwritten digit classification as a DVC + MLflow experiment project."""
