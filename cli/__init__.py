"""The ``cliq-webhooks`` command line: one small module per group of commands.

:mod:`.main` builds the parser and runs a command; :mod:`.endpoints`, :mod:`.events`
(publishing) and :mod:`.deliveries` (the delivery log, status, replay, test sends) have
the commands; :mod:`.base` what they share, :mod:`.output` the tables and JSON.
Output is a readable table by default and JSON with ``--json``. Bad input is reported
on stderr with exit status 2 and nothing enqueued; an unreachable Redis gives exit
status 1.
"""
