"""`python -m offerletters`: the command line (see offerletters.cli)."""

import sys

from offerletters.cli import main

if __name__ == "__main__":
    sys.exit(main())
