"""``python -m fastrnn`` = the ``fastrnn`` console script."""
import sys

from .cli import main

sys.exit(main())
