"""The toy shapes dataset, in the VOC or the folder layout.

``python data_scripts/make_toy.py`` is ``python -m deeplab data toy``.
Its code is :mod:`deeplab.prepare.toy`; ``--help`` shows the options.
"""

import sys

from deeplab.prepare.toy import main

if __name__ == "__main__":
    sys.exit(main())
