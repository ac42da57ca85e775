"""Looking at runs side by side: MLflow experiment tracking (``experiments``) and run comparison
tables and learning curves (``compare``)."""
