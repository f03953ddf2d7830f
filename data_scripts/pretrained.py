"""The ImageNet ResNetV1c backbones of the reference configs.

``python data_scripts/pretrained.py`` is ``python -m deeplab weights imagenet``.
Its code is :mod:`deeplab.weights.imagenet`; ``--help`` shows the options.
"""

import sys

from deeplab.weights.imagenet import main

if __name__ == "__main__":
    sys.exit(main())
