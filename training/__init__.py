"""Training stage: the teacher codec (load or train) and, later, decoder-only distillation."""
