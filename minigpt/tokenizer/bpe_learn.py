"""Learning BPE merges from pre-token counts: incremental pair counts and a priority queue.

Byte-pair encoding (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units",
§3.1; byte-level as in Radford et al. 2019, GPT-2 §2.2) starts from the 256 byte values and repeatedly
adds the most frequent adjacent pair of tokens as a new token. The textbook loop recounts every pair of
the corpus after each merge: O(corpus) per merge. Here a merge touches only the words that contain the
pair, and the best pair comes from a heap:

* `words[w]` is the current token sequence of the w-th distinct pre-token, `freqs[w]` how often it occurs.
  Counting distinct pre-tokens once (a corpus of 5 MB has ~10^5 of them) replaces the corpus by a table.
* `pair_counts[(a, b)]` is the number of times the pair occurs, weighted by word frequency.
* `where[(a, b)]` is a superset of the words containing the pair (stale entries are skipped cheaply).
* `heap` holds `(-count, a, b)` entries. A changed count pushes a new entry instead of updating the old
  one ("lazy deletion"): an entry whose count differs from `pair_counts` is stale and dropped when popped.

Ties between pairs of equal count go to the smallest `(a, b)`: lower byte values and earlier-learned
tokens win, so the same corpus always gives the same vocabulary.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Mapping

Pair = tuple[int, int]


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[int] | None:
    """`word` with every non-overlapping occurrence of (a, b), left to right, replaced by `new`.

    Returns None when the pair does not occur (the word was a stale entry of `where`).
    """
    out: list[int] = []
    i, n, found = 0, len(word), False
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
            found = True
        else:
            out.append(word[i])
            i += 1
    return out if found else None


def learn_tokens(
    word_counts: Mapping[bytes, int],
    n_new: int,
    min_frequency: int = 2,
    on_token: Callable[[], None] | None = None,
) -> list[bytes]:
    """Learn up to `n_new` tokens beyond the 256 bytes; returns the new tokens' bytes in merge order.

    Args:
        word_counts: distinct pre-tokens (as UTF-8 bytes) and their counts in the corpus.
        n_new: how many tokens to add.
        min_frequency: stop early once the best pair occurs fewer times than this.
        on_token: called after each new token (drives a progress bar).
    A merge whose bytes already form a token (e.g. "aa"+"a" and "a"+"aa" both give "aaa") reuses that
    token's id instead of adding a duplicate, so every token is a distinct byte string, as a tiktoken
    rank file requires.
    """
    vocab = [bytes([i]) for i in range(256)]
    token_id = {t: i for i, t in enumerate(vocab)}
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())

    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for w, (word, f) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += f
            where[pair].add(w)
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    added: list[bytes] = []
    while heap and len(added) < n_new:
        neg, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) != -neg:
            continue  # stale: this pair's count changed after the entry was pushed
        if -neg < min_frequency:
            break
        merged = vocab[a] + vocab[b]
        new = token_id.get(merged)
        if new is None:
            new = token_id[merged] = len(vocab)
            vocab.append(merged)
            added.append(merged)
            if on_token is not None:
                on_token()

        # Rewrite only the words that contain (a, b), and collect each pair's count change.
        delta: dict[Pair, int] = defaultdict(int)
        for w in where.pop((a, b)):
            old = words[w]
            merged_word = _merge_word(old, a, b, new)
            if merged_word is None:
                continue
            f = freqs[w]
            for pair in zip(old, old[1:]):
                delta[pair] -= f
            for pair in zip(merged_word, merged_word[1:]):
                delta[pair] += f
                if new in pair:
                    where[pair].add(w)
            words[w] = merged_word
        for pair, change in delta.items():
            if change == 0:
                continue  # a pair away from every occurrence: unchanged
            count = pair_counts[pair] + change
            if count > 0:
                pair_counts[pair] = count
                heapq.heappush(heap, (-count, *pair))
            else:
                del pair_counts[pair]
    return added
