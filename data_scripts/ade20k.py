"""ADE20k (ADEChallengeData2016): downloaded, checked, laid out.

``python data_scripts/ade20k.py`` is ``python -m deeplab data ade20k``.
Its code is :mod:`deeplab.prepare.ade20k`; ``--help`` shows the options.
"""

import sys

from deeplab.prepare.ade20k import main

if __name__ == "__main__":
    sys.exit(main())
