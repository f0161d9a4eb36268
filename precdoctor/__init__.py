"""precdoctor: find and fix reduced-precision failures of ONNX models on their way to TensorRT."""

__version__ = "0.1.0"
