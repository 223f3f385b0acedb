"""The FFHQ re-alignment under the name EG3D's FFHQ recipe uses; the same flags and behaviour as align_ffhq.py.

    python align_multiprocess.py --source=. --dest=realign1500 --threads=16
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from align_ffhq import main  # noqa: E402

if __name__ == '__main__':
    main()
