"""Runtime that runs inside the training container: python -m training.launch."""
