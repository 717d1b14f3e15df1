"""GenEM: physics-informed generative cryo-EM (simulate, translate noise, restore)."""
import os

# Idle OpenMP threads that spin steal the core their sibling needs on small shared machines: measured 3x slower
# with 2 torch threads on 2 busy cores (benchmarks/simulate.py). Set before torch is imported; the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
