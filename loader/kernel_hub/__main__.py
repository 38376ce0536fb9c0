"""`python -m kernel_hub`: the kernel-hub command."""

import sys

from .cli import main

sys.exit(main())
