import sys

from botenv.cli.parser import main

sys.exit(main())
