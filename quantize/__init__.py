"""Quantisation stage: Brevitas QAT of the student decoder."""
