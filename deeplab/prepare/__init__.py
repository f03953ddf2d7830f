"""Datasets on disk: download, verify and lay out PASCAL VOC + SBD, ADE20k and Cityscapes, make the toy dataset,
and check a folder dataset of your own.

Each module is one command of ``python -m deeplab data``: ``voc``, ``ade20k``, ``cityscapes``, ``toy``, ``check``
and ``download`` (one file, from mirrors, verified); :mod:`~deeplab.prepare.download` holds what they share.
"""
