"""One error root for the whole project.

Every error a user can cause is a ``BridgeEdgeError`` subclass. Subclasses carry structured
fields (kept in ``.fields``) so callers and tests can inspect *what* was wrong without parsing
the message; the message itself says what was wrong and what was expected, in one line.

The CLI prints ``bridge-edge: error: <message>`` and exits with ``exit_code``; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

from typing import Any


class BridgeEdgeError(Exception):
    """Root of every error bridge-edge raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __getattr__(self, name: str) -> Any:
        # Structured fields read like attributes: err.path, err.expected, ...
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def __str__(self) -> str:
        return self.message


# --- user input ------------------------------------------------------------------------------


class ConfigError(BridgeEdgeError):
    """A recipe, option or argument is invalid (fields: key, value, expected)."""


class StageReadError(ConfigError):
    """A fit stage read a recipe field that its stage-table entry does not declare, so its reuse
    key would not see a change to it (fields: stage, key, declared). A bug in the stage table."""


class SourceURLError(ConfigError):
    """A source URL does not parse (fields: url, grammar). The message restates the grammar."""


class DependencyMissingError(BridgeEdgeError):
    """An optional dependency is not installed (fields: package, install_hint)."""

    exit_code = 3


# --- data ------------------------------------------------------------------------------------


class DataError(BridgeEdgeError):
    """Signal data is unusable (fields: path, reason)."""


class DatasetNotFoundError(DataError):
    """Expected dataset files are missing (fields: path, expected)."""


class SampleRateError(DataError):
    """A sampling rate is wrong or inconsistent (fields: expected_hz, got_hz, where)."""


class NonFiniteError(DataError):
    """NaN or Inf where finite samples are required (fields: where, count, first_index)."""


class FrameError(DataError):
    """A device frame cannot be decoded (fields: reason, data)."""


class RunDirFormatError(DataError):
    """A fit run-directory file is missing, damaged, or in a layout this version does not read
    (fields: path, stage, expected); the message names the fit stage to re-run."""


# --- models, bundles, engines ----------------------------------------------------------------


class ModelError(BridgeEdgeError):
    """A model cannot be built, addressed or loaded (fields: model, reason)."""


class CheckpointError(ModelError):
    """A checkpoint does not match the model (fields: path, missing_keys, unexpected_keys, mismatched)."""


class LayerPathError(ModelError):
    """A block path does not resolve in the module tree (fields: path, available)."""


class BundleError(BridgeEdgeError):
    """A bundle is missing, malformed or fails verification (fields: path, file, problems)."""


class BundleVerificationError(BundleError):
    """A bundle file's hash, size or ONNX I/O differs from the manifest (fields: path, file, problems)."""


class EngineError(BridgeEdgeError):
    """An inference engine cannot be created or run (fields: engine, reason)."""


class EngineUnavailableError(EngineError, DependencyMissingError):
    """The engine's runtime is not installed on this machine (fields: engine, package, install_hint)."""


class CudaBindingsMissingError(EngineUnavailableError):
    """TensorRT may be there, but cuda-python's runtime bindings are not (fields: engine, package,
    install_hint, reason)."""


# --- devices, deploy -------------------------------------------------------------------------


class DeviceError(BridgeEdgeError):
    """A sensor or transport failed (fields: device, reason)."""


class DeviceTimeoutError(DeviceError):
    """A device did not answer in time (fields: device, operation, timeout_s)."""


class DeployError(BridgeEdgeError):
    """Deploying a bundle to a target failed (fields: target, step, reason)."""
