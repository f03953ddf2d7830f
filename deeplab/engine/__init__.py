"""Training, evaluation and the metrics they report, on one CPU, one GPU or many (torchrun)."""
