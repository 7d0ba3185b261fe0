"""Edit3D: multi-turn, attention-driven text editing of captured 3D scenes."""

__version__ = "0.1.0"
