"""Subcommands of the ``certun`` command line, one module each.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. :mod:`certun.cli` lists the
modules in ``COMMANDS``; adding a command is adding a module and one line there.
Shared argument types (``positive``, ``unit_interval``, ``count``) and the output
helpers ``emit`` (one JSON object with ``--json``, text otherwise) and ``fail`` (one
line on stderr, exit status 2) live in :mod:`certun.commands._args`. Every command
takes ``--json``; the contract is stated in :mod:`certun.cli`.
"""
