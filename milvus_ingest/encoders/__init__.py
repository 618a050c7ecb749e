"""Text encoders: engine choice per machine and an ONNX Runtime engine for CPUs."""
