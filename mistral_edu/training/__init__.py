"""Training the embedded default (`python -m mistral_edu.training.train`): a room above what it uses.

It reads the corpus and writes the checkpoint in mistral_edu/default/, and uses the model, the loaders,
generation and the head scores of analysis; nothing in the package imports it.
"""
__all__ = []
