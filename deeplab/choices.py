"""The choices the command line offers, as plain values: importable without torch, so that ``python -m deeplab
--help`` and a usage error answer at once."""

AMP_CHOICES = ("none", "bf16", "fp16")  # autocast precisions (deeplab.engine.precision.AMP_DTYPES)
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")  # deeplab.models.export.FORMATS
# How long a collective waits for the slowest process before the run fails (deeplab.engine.distributed.TIMEOUT).
# PyTorch's default for NCCL is 10 minutes; the main process alone writes checkpoints and TensorBoard pictures
# between collectives, which on a slow network filesystem can take longer. The reference waits 10 hours; a hung run
# should not hold GPUs that long.
DIST_TIMEOUT_MINUTES = 180
