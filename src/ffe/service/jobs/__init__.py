"""The job queue and its workers: backtests, sweeps and forecast benchmarks submitted by the
API, run by ``ffe worker`` processes (or, in one process, by ``ffe run``).

``queue`` (submit, claim, heartbeat, finish, recover: the journal's ``jobs`` table),
``registry`` (the workers alive), ``wake`` (waking workers on submit: in process, Redis,
PostgreSQL), ``worker`` (claims and runs jobs), ``process`` (one job's work in a process group
of its own), ``work`` (what each kind of job does), ``stop`` (how jobs end early) and
``runner`` (``ffe worker`` as a process).
"""
