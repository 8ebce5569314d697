"""Control Unit learners and their replay: the protocol (protocol.py), DQN (dqn.py), QR-DQN (qr_dqn.py),
PopArt (popart.py)."""
from .protocol import ActInfo, Learner, Transition, build_learner, learner_class

__all__ = ["ActInfo", "Learner", "Transition", "build_learner", "learner_class"]
