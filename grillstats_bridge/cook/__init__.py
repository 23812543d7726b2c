"""Cook predictions: the pure predictor, detector and tracker, its service, its HA rows."""
