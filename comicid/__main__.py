import sys

from comicid.cli import main

sys.exit(main())
