"""Weights from the outside world: the ImageNet backbones every reference run starts from
(:mod:`~deeplab.weights.imagenet`) and the reference's released checkpoints (:mod:`~deeplab.weights.released`),
downloaded, verified by content and recorded. The commands: ``python -m deeplab weights imagenet|released``.
"""
