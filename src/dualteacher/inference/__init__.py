"""Evaluation and inference: metrics, evaluation modes (whole / centre / sliding window, TTA), loading a trained model, prediction, ONNX export, colours."""
