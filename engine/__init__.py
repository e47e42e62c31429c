"""The workbench engine: store, jobs and compute, with no front-end imports.

Front ends (``workbench``) import from here; nothing here imports textual, rich, typer or
``workbench``, and the compute packages never import ``engine.store`` or ``engine.jobs``.
"""
