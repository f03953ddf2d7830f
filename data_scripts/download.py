"""Download one file from mirrors, resumable and verified.

``python data_scripts/download.py`` is ``python -m deeplab data download``.
Its code is :mod:`deeplab.prepare.download`; ``--help`` shows the options.
"""

import sys

from deeplab.prepare.download import main

if __name__ == "__main__":
    sys.exit(main())
