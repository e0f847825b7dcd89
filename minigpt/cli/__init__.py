"""The commands, one module each, every one a Hydra application composing `conf/<command>.yaml`.

    python -m minigpt.cli.generate          continue a prompt (sampling, greedy or beam)
    python -m minigpt.cli.chat              chat in the terminal
    python -m minigpt.cli.export_hf         export a model folder to a Hugging Face transformers folder
    python -m minigpt.cli.moe_prune         keep the most used experts of an MoE model
    python -m minigpt.cli.preference_pairs  preference pairs from a model's samples, labelled by a task
    python -m minigpt.cli.train_tokenizer   learn a tokenizer ahead of a run

`train.py` and `evaluate.py` at the repository root are two others; `python -m minigpt.serve` (the
OpenAI-compatible server) and `python -m minigpt.export.gguf` (a GGUF file) live with their packages.
All share `command.command`: the same `key=value` syntax, and a user's mistake printed as one sentence
with exit status 2.
"""
