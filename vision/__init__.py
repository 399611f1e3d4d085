"""Vision models on the mambakit core (Vim, VMamba-style). Filled in by the vision issue."""
