"""Tests of the data contracts: the Kaggle CSV, pictures, sources, splits and their lineage."""
