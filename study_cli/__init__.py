"""The ``study`` command: the entry point above both :mod:`study` (sweeps) and :mod:`dashboards`
(reports), which wires the two together (the report after a demo, the view gallery of each
trial)."""
