"""Models (torch): every foundation model seen as stem -> blocks -> head.

- ``base``          ``InputSpec``, ``ModelAdapter`` (the interface; no torch import)
- ``addressing``    block paths resolved without eval; ``probe_shapes``
- ``registry``      ``build_adapter(table)``: the one place a backend is chosen by ``kind``
- ``openecg_adapter``  openecg codec_v6 (old modality, rhythm head)
- ``papagei``       PaPaGei ResNet1D (PaPaGei-S names; small default config)
- ``hubert_ecg``    HuBERT-ECG small/base/large (optional ``transformers``)
- ``generic``       any ``nn.Module`` from an import path + recipe table
- ``checkpoints``   safe reading, strict loading with key diff, safetensors save/load
- ``slices``        ``UpToBlock`` / ``FromBlock`` plain-module pieces for composition
- ``pretrain``, ``ppg_augment``  self-supervised PPG pretraining (no labels) and its check

Importing this package imports no torch; the modules above (except base/registry/addressing) do.
"""
