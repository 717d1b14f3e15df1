"""GenEM: physics-informed generative cryo-EM (simulate, translate noise, restore)."""

__version__ = "0.1.0"
