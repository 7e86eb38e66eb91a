import sys

from study_cli.commands import main

sys.exit(main())
