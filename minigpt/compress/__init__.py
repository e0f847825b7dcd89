"""Model compression: weight quantization (int8, int4, NF4), pruning (unstructured, 2:4, structured, gradual).

Each method writes an ordinary model folder that `load_model_folder`, `evaluate.py`, generation and the next
stage read (docs/compression.md).
"""
