"""Images in /v1/chat/completions: the official `openai` client sends OpenAI's content parts to a tiny
multimodal model folder and gets the reply of the terminal's image chat (`minigpt.cli.chat image=`); bad
images, images for a text-only model and `<image>` markers without images are 400s in OpenAI's shape."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from fastapi.testclient import TestClient
from openai import OpenAI
from PIL import Image
from serve_fixtures import TEXT, chat_model_folder

from minigpt.cli.vision_chat import ImageChatSession
from minigpt.model import ModelConfig, Transformer
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.model.vision import (
    VisionConfig,
    VisionLanguageModel,
    VisionTower,
    load_vision_language_model,
    save_vision_language_model,
)
from minigpt.serve.app import create_app
from minigpt.serve.images import ImageChat
from minigpt.serve.settings import ServeSettings
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_image_token

SIZE = 8  # the tiny encoder's images: 8×8 RGB


def vision_folder(folder: Path) -> Path:
    """A tiny random vision-language model folder (CNN, 4 placeholders per image). `init_std=0.3`, as in
    `chat_model_folder`: its greedy replies vary from token to token, so a reply that ignored the image
    or saw another one would show."""
    tokenizer = CharTokenizer.train(TEXT)
    image_id = add_image_token(tokenizer)
    torch.manual_seed(0)
    lm = Transformer(
        ModelConfig(n_layer=2, n_head=4, n_embd=32, block_size=48, vocab_size=tokenizer.vocab_size, init_std=0.3)
    )
    tower = VisionTower(VisionConfig(kind="cnn", image_size=SIZE, num_tokens=4, n_embd=16), 32)
    with torch.no_grad():  # a strong image signal: the projected vectors dominate the placeholders' inputs
        tower.projector[-1].weight.mul_(30.0)
    return save_vision_language_model(folder, VisionLanguageModel(lm, tower, image_id).eval(), tokenizer)


def client_for(folder: Path, images: bool) -> Iterator[OpenAI]:
    model, tokenizer = load_model_and_tokenizer(folder)
    chat = ImageChat(*load_vision_language_model(folder)) if images else None
    app = create_app(model, tokenizer, ServeSettings(), images=chat)
    with TestClient(app) as http:  # runs the lifespan (the engine); an httpx.Client, so the SDK can use it
        yield OpenAI(base_url="http://testserver/v1", api_key="-", max_retries=0, http_client=http)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vision_folder(tmp_path_factory.mktemp("vlm"))


@pytest.fixture(scope="module")
def client(folder: Path) -> Iterator[OpenAI]:
    yield from client_for(folder, images=True)


def picture(seed: int, size: int = SIZE) -> np.ndarray:
    """A plain black, white or red image (seed 0, 1, 2), (3, size, size) in [0, 1]: the CNN's pooled features of
    random noise all look alike, plain colours do not."""
    colour = [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)][seed]
    return np.broadcast_to(np.array(colour, np.float32)[:, None, None], (3, size, size)).copy()


def data_url(image: np.ndarray) -> str:
    png = io.BytesIO()
    Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(png, format="PNG")
    return "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()


def ask(url: str, text: str = "what is this?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}
    ]


def test_the_reply_is_the_terminal_image_chats(client: OpenAI, folder: Path) -> None:
    vlm, tokenizer = load_vision_language_model(folder)
    replies = []
    for seed in (0, 1, 2):
        image = picture(seed)
        expected = ImageChatSession(vlm, tokenizer, image, max_new_tokens=12).reply("what is this?")
        out = client.chat.completions.create(model="minigpt", messages=ask(data_url(image)), max_tokens=12)
        assert out.choices[0].message.content == expected
        assert out.choices[0].finish_reason in ("stop", "length")
        # usage counts each image as its 4 placeholders
        prompt = tokenizer.encode("what is this?")
        assert out.usage.prompt_tokens == len(prompt) + 4 + 5  # + <|bos|><|user|> … <|end|><|assistant|> and a space
        replies.append(expected)
    assert len(set(replies)) > 1  # the model looks at the image: different pictures, different answers


def test_streaming_sends_the_same_reply_and_stop_cuts_it(client: OpenAI) -> None:
    url = data_url(picture(1))
    whole = client.chat.completions.create(model="minigpt", messages=ask(url), max_tokens=12)
    text = whole.choices[0].message.content
    chunks = client.chat.completions.create(model="minigpt", messages=ask(url), max_tokens=12, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert len(text) >= 2
    cut = client.chat.completions.create(model="minigpt", messages=ask(url), max_tokens=12, stop=[text[1]])
    assert cut.choices[0].message.content == text[: text.index(text[1])]


def bad_request(client: OpenAI, messages: list[dict], **kwargs: object) -> dict:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="minigpt", messages=messages, **kwargs)  # type: ignore[arg-type]
    assert err.value.status_code == 400
    return err.value.body  # the SDK's parsed "error" object: message, type, param, code


def test_bad_images_are_400s_that_say_why(client: OpenAI) -> None:
    where = "messages.0.content.0.image_url.url"
    not_base64 = bad_request(client, ask("data:image/png;base64,@@@"))
    assert not_base64["param"] == where and not_base64["code"] == "invalid_image"
    assert "base64" in not_base64["message"]
    not_an_image = bad_request(client, ask("data:image/png;base64," + base64.b64encode(b"hello").decode()))
    assert "not a readable image" in not_an_image["message"]
    too_big = bad_request(client, ask(data_url(picture(1, size=16))))
    assert f"resize it to {SIZE}×{SIZE}" in too_big["message"]
    remote = bad_request(client, ask("https://example.com/cat.png"))
    assert "data URL" in remote["message"]
    a_file = bad_request(client, ask("/etc/passwd"))
    assert a_file["code"] == "invalid_image"


def test_markers_without_images_and_sampling_are_refused(client: OpenAI) -> None:
    marker = bad_request(client, [{"role": "user", "content": "<image> what is this?"}])
    assert marker["code"] == "image_count_mismatch" and "1 <image> markers but 0 images" in marker["message"]
    both = ask(data_url(picture(1)), "and <image> this?")
    assert "2 <image> markers but 1 images" in bad_request(client, both)["message"]
    assistant = [
        *ask(data_url(picture(1))),
        {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": data_url(picture(2))}}]},
    ]
    assert "user messages only" in bad_request(client, assistant)["message"]
    assert bad_request(client, ask(data_url(picture(1))), temperature=0.8)["param"] == "temperature"
    assert bad_request(client, ask(data_url(picture(1))), n=2)["param"] == "n"
    many = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(picture(1))}}] * 12}]
    assert bad_request(client, many)["code"] == "context_length_exceeded"  # 48 placeholders fill the context


def test_text_still_goes_through_the_engine(client: OpenAI, folder: Path) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "2+3="}]}]
    as_parts = client.chat.completions.create(model="minigpt", messages=parts, temperature=0, max_tokens=8)
    plain = [{"role": "user", "content": "2+3="}]
    as_text = client.chat.completions.create(model="minigpt", messages=plain, temperature=0, max_tokens=8)
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content


def test_a_text_only_model_refuses_images(tmp_path: Path) -> None:
    for client in client_for(chat_model_folder(tmp_path / "text"), images=False):
        body = bad_request(client, ask(data_url(picture(1))))
        assert body["code"] == "image_input_not_supported" and "reads text only" in body["message"]
        assert body["type"] == "invalid_request_error"
