"""One module per step of `up`; each has run(target, ...) and explain(target, ...)."""
