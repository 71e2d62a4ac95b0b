"""What a stage records: MLflow runs, trained models as MLflow models, stage wall times."""
