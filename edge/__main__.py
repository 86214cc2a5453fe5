import sys

from fer_edge.edge.cli import main

sys.exit(main())
