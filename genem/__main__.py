import sys

from genem.cli.main import main

sys.exit(main())
