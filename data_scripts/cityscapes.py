"""Cityscapes from its archives: the 19 training classes.

``python data_scripts/cityscapes.py`` is ``python -m deeplab data cityscapes``.
Its code is :mod:`deeplab.prepare.cityscapes`; ``--help`` shows the options.
"""

import sys

from deeplab.prepare.cityscapes import main

if __name__ == "__main__":
    sys.exit(main())
