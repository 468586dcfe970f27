"""Fine-tuning: datasets from good calls, backends that train, the offline judge."""
