"""Data: Kaggle CSV contract, sources for data/, the prepare stage and its EDA."""
