"""Neural-network building blocks: the involution operator and shared layers."""
from stabgan.nn.involution import Involution2d, involution, involution_reference

__all__ = ["Involution2d", "involution", "involution_reference"]
