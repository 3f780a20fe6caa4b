"""Subcommands of the ``certun`` command line, one module each.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. :mod:`certun.cli` lists the
modules in ``COMMANDS``; adding a command is adding a module and one line there.
Shared argument types (``positive``, ``unit_interval``, ``count``) live in
:mod:`certun.commands._args`; every command takes ``--json`` and prints one JSON
object when it is given.
"""
