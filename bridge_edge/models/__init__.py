"""Models (torch): layer addressing and truncation, adapters (openecg, papagei, hubert_ecg, generic)."""
