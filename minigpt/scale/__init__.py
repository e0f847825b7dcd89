"""Scaling a run up: strategies (DDP, FSDP2, DeepSpeed), sharding, resume, peak FLOPs."""
