"""inet: Interaction Networks, a DQN Control Unit in charge of many Processing Units."""
__version__ = "0.1.0"
