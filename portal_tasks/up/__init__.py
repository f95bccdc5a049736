"""`up`'s orchestration: ``command`` (the `up` task: snapshot, warm or cold, forwards, browser, attach),
``warm`` (everything already runs: one read-only call), ``boot`` (cold: :class:`boot.UpPlan`, the plan of the
one streaming helper call, built from the parts), ``single`` (one part on its own: `portal env`, `cluster`, ...)."""
