import sys

from hyperscaler.cli import main

sys.exit(main())
