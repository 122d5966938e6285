"""``python -m hbchat.bench``: the same as ``hbchat-bench``."""

import sys

from hbchat.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
