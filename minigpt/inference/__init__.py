"""Generation: KV cache, greedy / sampling / beam search, chat."""
