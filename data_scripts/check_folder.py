"""Check a folder dataset of your own before training.

``python data_scripts/check_folder.py`` is ``python -m deeplab data check``.
Its code is :mod:`deeplab.prepare.check`; ``--help`` shows the options.
"""

import sys

from deeplab.prepare.check import main

if __name__ == "__main__":
    sys.exit(main())
