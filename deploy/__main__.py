import sys

from deploy.deploy import main

sys.exit(main())
