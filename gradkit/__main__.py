"""``python -m gradkit`` is the ``gradkit`` command."""
import sys

from gradkit.cli import main

sys.exit(main())
