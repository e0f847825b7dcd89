"""Chat data: the loss mask is exactly the assistant tokens, packing changes nothing, bad JSONL names its line."""

import json

import pytest
import torch

from minigpt.data.chat import ChatDataModule, encode_conversation
from minigpt.data.chat_files import read_chat_jsonl
from minigpt.data.packing import block_causal_mask, collate_packed, collate_padded, pack, segment_positions
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tasks import get_task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 :?"


def _tokenizer() -> CharTokenizer:
    tok = CharTokenizer.train(CHARS)
    add_chat_tokens(tok)
    return tok


def test_targets_are_exactly_the_assistant_tokens_and_their_end():
    tok = _tokenizer()
    messages = [
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "cd"},
        {"role": "user", "content": "e"},
        {"role": "assistant", "content": "f"},
    ]
    inputs, targets = encode_conversation(tok, messages)
    end = tok.special_id("<|end|>")
    trained = [t for t in targets if t != IGNORE_INDEX]
    assert trained == [*tok.encode("cd"), end, *tok.encode("f"), end]
    # Each trained target is predicted from the token right before it in the same rendering.
    full = inputs + [targets[-1]]
    for i, t in enumerate(targets):
        if t != IGNORE_INDEX:
            assert full[i + 1] == t
    assert targets[:5] == [IGNORE_INDEX] * 5  # <|user|>, "a", "b", <|end|>, <|assistant|> are not trained
    assert len(inputs) == len(targets)


def test_packing_rows_positions_and_mask():
    rows = pack([([1, 2], [3, 4]), ([5, 6, 7], [8, 9, 10]), ([11], [12])], seq_len=5)
    assert [r[0] for r in rows] == [[1, 2, 5, 6, 7], [11]]
    assert rows[0][2] == [0, 0, 1, 1, 1]
    segments = torch.tensor([[0, 0, 1, 1, 1, 2]])
    assert segment_positions(segments).tolist() == [[0, 1, 0, 1, 2, 0]]
    mask = block_causal_mask(segments)[0, 0].int().tolist()
    assert mask[3] == [0, 0, 1, 1, 0, 0]  # token 3 sees its own segment's past only
    assert mask[5] == [0, 0, 0, 0, 0, 1]


def test_packed_loss_equals_unpacked_loss():
    tok = _tokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=48, vocab_size=tok.vocab_size))
    examples = [encode_conversation(tok, ex.messages()) for ex in get_task("reversal").examples("train", 12)]
    pad = tok.pad_id

    @torch.no_grad()
    def summed_loss(batch: dict) -> tuple[float, int]:
        logits, _ = model(batch["input_ids"], positions=batch.get("positions"), attn_mask=batch.get("attn_mask"))
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return float(loss), int((batch["targets"] != IGNORE_INDEX).sum())

    unpacked = summed_loss(collate_padded(examples, pad))
    rows = pack(examples, seq_len=48)
    assert len(rows) < len(examples)  # several examples really share a row
    packed = summed_loss(collate_packed(rows, pad, seq_len=48))
    assert packed[1] == unpacked[1]
    assert packed[0] == pytest.approx(unpacked[0], rel=1e-5)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "Expecting property name"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role 'robot'"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant message"),
        ('{"prompt": "x", "completion": 3}', "must be strings"),
        ('["a list"]', "JSON object"),
    ],
)
def test_malformed_jsonl_line_is_named(tmp_path, line, reason):
    path = tmp_path / "chats.jsonl"
    good = json.dumps({"prompt": "ab", "completion": "ba"})
    path.write_text(f"{good}\n\n{good}\n{line}\n{good}\n")
    with pytest.raises(ValueError, match=rf"line 4: .*{reason}"):
        read_chat_jsonl(path)


def test_jsonl_datamodule_both_formats_and_holdout(tmp_path):
    path = tmp_path / "chats.jsonl"
    lines = [{"prompt": f"ab{i}", "completion": "ba"} for i in range(10)]
    lines.append(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        }
    )
    path.write_text("\n".join(json.dumps(x) for x in lines))
    dm = ChatDataModule(path=str(path), seq_len=32, batch_size=4, val_fraction=0.2, seed=0)
    dm.attach_tokenizer(CharTokenizer.train(CHARS + "yh"))
    dm.prepare()
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == 11 and len(dm.splits["val"]) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and (batch["targets"] != IGNORE_INDEX).any()


def test_datamodule_rejects_unknown_characters_and_overlong_examples():
    dm = ChatDataModule(tasks={"arithmetic": get_task("arithmetic")}, seq_len=64, num_train=10, num_val=4)
    dm.attach_tokenizer(CharTokenizer.train("abc 0123456789"))  # no 'w', 'h', '?'...
    with pytest.raises(ValueError, match="task arithmetic: characters .*'h'"):
        dm.prepare()
    dm = ChatDataModule(tasks={"sorting": get_task("sorting")}, seq_len=12, num_train=10, num_val=4)
    dm.attach_tokenizer(CharTokenizer.train(CHARS))
    with pytest.raises(ValueError, match="data.truncate=true"):
        dm.prepare()
