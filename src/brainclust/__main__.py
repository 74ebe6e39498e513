from brainclust.cli import main
import sys

sys.exit(main())
