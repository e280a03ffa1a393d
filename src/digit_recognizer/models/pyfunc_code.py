"""The registered pyfunc as code (MLflow 3's models-from-code): MLflow stores this file with
each version and runs it when the version loads, so what a version runs is readable and
diffable in its artifacts (``code/``), never unpickled. The package it imports travels in
the version's ``code_paths``. Only MLflow imports this file; the project never does.
"""

from mlflow.models import set_model

from digit_recognizer.models.pyfunc import DigitClassifier

set_model(DigitClassifier())
