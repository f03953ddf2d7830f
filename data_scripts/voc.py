"""PASCAL VOC 2012 + SBD: the trainaug training set and VOC val.

``python data_scripts/voc.py`` is ``python -m deeplab data voc``.
Its code is :mod:`deeplab.prepare.voc`; ``--help`` shows the options.
"""

import sys

from deeplab.prepare.voc import main

if __name__ == "__main__":
    sys.exit(main())
