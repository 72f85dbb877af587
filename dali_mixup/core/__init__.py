"""The machinery behind the operators (never imported by users directly): configs, draws,
plans, costs, the assignment, the plain expressions and their NumPy fast paths, labels,
images, checks and the backend glue. See ``docs/architecture.md``."""
