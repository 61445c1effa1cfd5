import sys

from hybrid.cli.root import main

sys.exit(main())
