"""What the benchmark suite (bench/) measures, importable so ``gradkit bench`` and
the suite share one definition: the hand-written NumPy floor, the same MLP step in
gradkit and in peers, and the report that turns pytest-benchmark JSON into ratios."""
