"""The reference's released checkpoints, verified by content.

``python data_scripts/checkpoints.py`` is ``python -m deeplab weights released``.
Its code is :mod:`deeplab.weights.released`; ``--help`` shows the options.
"""

import sys

from deeplab.weights.released import main

if __name__ == "__main__":
    sys.exit(main())
