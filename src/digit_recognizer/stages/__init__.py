"""One module per dvc.yaml stage: read its inputs, call the library, write its declared outputs."""
