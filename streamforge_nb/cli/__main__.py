"""`python -m streamforge_nb.cli ...`: the same as `streamforge-nb ...`."""

import sys

from streamforge_nb.cli import main

sys.exit(main())
