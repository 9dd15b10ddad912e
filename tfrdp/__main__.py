import sys

from tfrdp.cli import main

sys.exit(main())
