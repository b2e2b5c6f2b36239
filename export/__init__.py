"""Export stage: QONNX (for FINN) and QCDQ ONNX (for onnxruntime) of the quantised student."""
