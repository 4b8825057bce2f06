"""Coverage-guided fuzz harnesses (atheris; ``make fuzz``, not run in CI)."""
