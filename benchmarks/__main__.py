import sys

from fer_edge.benchmarks.cli import main

sys.exit(main())
