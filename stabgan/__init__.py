"""stabgan: train involution GANs and detect, with evidence, when their training collapses."""
import os

__version__ = "0.1.0"

# OpenMP threads that spin while they wait make torch 2-6x slower on a machine whose cores are
# shared (measured here: a conv step 147 ms spinning vs 45 ms passive on 2 busy cores). It only
# takes effect when stabgan is imported before torch (the CLI does); the user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
