"""Evaluation beyond test accuracy: post-training quantization (``ptq.ptq_table``)."""
