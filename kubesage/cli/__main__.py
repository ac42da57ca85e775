import sys

from kubesage.cli import main

sys.exit(main())
