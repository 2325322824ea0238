"""The composition root: the one package that imports every domain.

It builds the long-lived objects of a process up front (:mod:`.runtime`), the HTTP application
(:mod:`.app`), the job registry (:mod:`.jobs`), the scheduler's loops (:mod:`.scheduler`) and
the command line (:mod:`.cli`). Nothing below it imports it: domains and ``kit`` declare what
they need as narrow Protocols (``kit.queue.JobContext``, ``notifications.ports``,
``social.ports``...) and the runtime satisfies them (docs/architecture.md).
"""
