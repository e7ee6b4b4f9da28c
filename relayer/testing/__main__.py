import sys

from relayer.testing.run import main

sys.exit(main())
