import sys

from isofast.cli import main

sys.exit(main())
