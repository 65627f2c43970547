"""bridge-edge: cross-modal biosignal bridges (BioX-Bridge), trained offline, run live at the edge.

Importing this package is cheap on purpose: it must not pull torch, onnxruntime, bleak,
pyserial or tensorrt. Those are imported lazily inside the backend that needs them.
"""

__version__ = "0.1.0"
