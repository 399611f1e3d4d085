"""``python -m mambakit.apps [args]``: the same as ``mambakit demo [args]``."""
from . import main

raise SystemExit(main())
