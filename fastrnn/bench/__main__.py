"""``python -m fastrnn.bench`` = ``fastrnn bench``: the cell benchmark."""
import sys

from .cells import main

sys.exit(main())
