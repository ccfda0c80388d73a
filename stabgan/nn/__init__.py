"""Neural-network building blocks: the involution operator and shared layers."""
from stabgan.nn.involution import NORMS, Involution2d, involution, involution_reference

__all__ = ["NORMS", "Involution2d", "involution", "involution_reference"]
