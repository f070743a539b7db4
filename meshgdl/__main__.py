import sys

from meshgdl.cli import main

sys.exit(main())
