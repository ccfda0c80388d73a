"""stabgan: train involution GANs and detect, with evidence, when their training collapses."""
__version__ = "0.1.0"
