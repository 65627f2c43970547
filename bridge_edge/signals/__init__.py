"""Signals: numpy/scipy only. Simulator, dataset loaders and splits, versioned preprocessing, SQI, beats."""
