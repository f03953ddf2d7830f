"""The choices the command line offers, as plain values: importable without torch, so that ``python -m deeplab
--help`` and a usage error answer at once."""

AMP_CHOICES = ("none", "bf16", "fp16")  # autocast precisions (deeplab.engine.precision.AMP_DTYPES)
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")  # deeplab.models.export.FORMATS
