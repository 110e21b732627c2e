"""The application layer: the use cases and process types the CLI, the API and a worker share
(the job queue and its workers, the analysis pre-compute, the probes of a process with no API).

It sits between the API and the composition root: routes and commands call it; it asks
``ffe.bootstrap`` for wired objects and never reaches up into ``ffe.api`` or ``ffe.cli``.
"""
