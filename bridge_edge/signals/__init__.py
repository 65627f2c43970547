"""Signals: numpy only (``resequence`` also needs scipy: a workstation module). Simulator, dataset loaders and splits, versioned preprocessing, SQI, beats."""
