"""The training pipeline: history from any metric source in, a verified model bundle out."""
