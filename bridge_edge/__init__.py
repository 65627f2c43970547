"""bridge-edge: cross-modal biosignal bridges (BioX-Bridge), trained offline, run live at the edge.

Importing this package is cheap on purpose: it must not pull torch, onnxruntime, bleak,
pyserial or tensorrt. Those are imported lazily inside the backend that needs them.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # the installed distribution's version (pyproject.toml); bundles carry versions of their own
    __version__ = version("bridge-edge")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"
