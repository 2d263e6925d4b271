"""The strategy kinds, named once: the spec's models (`tasks.spec.STRATEGIES`), the modules that
run them (`tasks.strategies.MODULES`), the CLI's `--strategy` choices and the Run form's all
follow this tuple. Its own module, with no imports, so that the CLI can offer the choices
without loading the rest."""

STRATEGY_KINDS = ("rolling", "blue-green", "canary")
