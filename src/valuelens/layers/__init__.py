"""The audit layers. Each is a function ``run(model, audit, settings, tracker)``
returning tidy tables (name → DataFrame) whose rows carry no model column;
the orchestrator adds it."""
