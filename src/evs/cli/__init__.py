"""The ``evs`` command: one module per subcommand."""
