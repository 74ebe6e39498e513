import sys

from brainclust.cli import main

sys.exit(main())
