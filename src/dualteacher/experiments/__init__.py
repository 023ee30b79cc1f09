"""The experiment verbs built on training: the shared recipe, `compare`, the demo, and their plots."""
