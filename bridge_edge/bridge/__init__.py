"""BioX-Bridge (torch): prototype bridge, position selection, training, KD baseline, evaluation, composition."""
