"""Images in /v1/chat/completions, for the model folder of a `stage=multimodal` run (docs/multimodal.md).

OpenAI's wire format: a user message's content is a list of parts, `{"type": "text", "text": ...}` and
`{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`. Each image part becomes an
`<image>` marker where it stands, the parts joined by spaces (the training conversations write
"<image> what digit is this?"), and the conversation is answered by the image path of
`python -m minigpt.cli.chat image=` (`minigpt.evaluation.vision.greedy_reply_ids`): greedy decoding that
reruns the short sequence each step. The continuous-batching engine takes token ids, not image
embeddings, so image requests are answered beside it, one at a time (a `VisionLanguageModel` holds
per-call state: the MoT modality mask, the cross-attention images).

Only data URLs: the server fetches nothing from the network and reads no file a client names.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from typing import TYPE_CHECKING

import numpy as np

from minigpt.data.vision.example import IMAGE_MARKER, VisionExample
from minigpt.data.vision.jsonl import decode_image
from minigpt.serve.errors import APIError
from minigpt.serve.guard import Choice
from minigpt.serve.schemas import ChatMessage, ChatRequest, ImagePart
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError

if TYPE_CHECKING:  # the image path's own imports wait for a multimodal model: a text server starts as fast as before
    from minigpt.model.vision import VisionLanguageModel


def message_text(message: ChatMessage) -> str:
    """The message's content as text: a string as it is; parts joined by spaces, each image as `<image>`."""
    if isinstance(message.content, str):
        return message.content
    return " ".join(IMAGE_MARKER if isinstance(p, ImagePart) else p.text for p in message.content)


def has_images(messages: list[ChatMessage]) -> bool:
    """Whether any message has an image part."""
    return any(isinstance(m.content, list) and any(isinstance(p, ImagePart) for p in m.content) for m in messages)


def decode_data_url(url: str, image_size: int, where: str) -> np.ndarray:
    """The image of a `data:image/...;base64,` URL as the encoder takes it; a 400 naming `where` otherwise."""

    def refuse(message: str) -> APIError:
        return APIError(400, f"{where}: {message}", param=where, code="invalid_image")

    if not url.startswith("data:"):
        raise refuse(
            "send the image inline as a data URL (data:image/png;base64,...); "
            "this server fetches no URL and reads no file."
        )
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma or not header.endswith(";base64") or not header.startswith("image/"):
        raise refuse(f"a data URL of an image in base64 is data:image/<type>;base64,<data>, not data:{header},….")
    try:
        raw = base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise refuse("the data URL's payload is not valid base64.") from None
    try:
        return decode_image(io.BytesIO(raw), f"at {where}", image_size)
    except ValueError as err:  # not an image, or another size: Pillow's or the size check's reason
        raise APIError(400, f"The {err}.", param=where, code="invalid_image") from None


class ImageChat:
    """Answers conversations with images through a `VisionLanguageModel`, one request at a time."""

    def __init__(self, model: VisionLanguageModel, tokenizer: Tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.lock = threading.Lock()

    @staticmethod
    def wanted(messages: list[ChatMessage]) -> bool:
        """Whether the request goes this way: an image part, or an `<image>` marker written in the text
        (which then has no image to show: refused by `example` rather than read as plain characters)."""
        return has_images(messages) or any(IMAGE_MARKER in message_text(m) for m in messages)

    @staticmethod
    def check_sampling(body: ChatRequest) -> None:
        """Image replies are greedy (as `minigpt.cli.chat image=`): refuse what would ask for sampling."""
        sent = body.model_fields_set
        if body.n != 1:
            raise APIError(400, f"Image requests are answered greedily: n must be 1, got {body.n}.", param="n")
        if ("temperature" in sent and body.temperature > 0) or body.top_p < 1.0:
            param = "top_p" if body.top_p < 1.0 else "temperature"
            raise APIError(
                400,
                "Image requests are decoded greedily (the image path has no sampler): "
                "leave temperature and top_p out, or send temperature 0.",
                param=param,
            )

    def example(self, messages: list[ChatMessage]) -> VisionExample:
        """The conversation with its decoded images and an open assistant turn (a 400 for bad images, images
        outside user messages, or `<image>` markers in the text beside the image parts)."""
        size = self.model.tower.config.image_size
        images: list[np.ndarray] = []
        for i, message in enumerate(messages):
            parts = message.content if isinstance(message.content, list) else []
            for j, part in enumerate(parts):
                if isinstance(part, ImagePart):
                    where = f"messages.{i}.content.{j}.image_url.url"
                    if message.role != "user":
                        raise APIError(400, f"{where}: images go in user messages only.", param=where)
                    images.append(decode_data_url(part.image_url.url, size, where))
        rendered = [{"role": m.role, "content": message_text(m)} for m in messages]
        markers = sum(m["content"].count(IMAGE_MARKER) for m in rendered)
        if markers != len(images):
            raise APIError(
                400,
                f"The messages have {markers} {IMAGE_MARKER} markers but {len(images)} images: each image_url part "
                f"stands where it is in the content, so remove the {IMAGE_MARKER} text (or send its image).",
                param="messages",
                code="image_count_mismatch",
            )
        return VisionExample(images, [*rendered, {"role": "assistant", "content": ""}], "chat")

    def prompt_ids(self, example: VisionExample) -> list[int]:
        """The prompt's token ids (each image as its placeholders), for the limits and `usage`; a 400 when
        it leaves no room in the model's context for an answer."""
        from minigpt.data.vision.datamodule import encode_vision_example

        placeholders = self.model.tower.config.placeholders
        try:
            ids, _ = encode_vision_example(self.tokenizer, example, placeholders, add_generation_prompt=True)
        except ConfigError as err:  # a character the tokenizer cannot write
            raise APIError(400, str(err), param="messages") from None
        context = self.model.lm.config.block_size
        if len(ids) >= context:
            raise APIError(
                400,
                f"The conversation takes {len(ids)} tokens ({placeholders} per image), which fills the model's "
                f"context of {context}; send fewer images or shorter messages.",
                param="messages",
                code="context_length_exceeded",
            )
        return ids

    def answer(self, example: VisionExample, max_new_tokens: int, stops: list[str]) -> tuple[Choice, dict[str, int]]:
        """The greedy reply (cut at the first stop string) and the request's `usage`."""
        from minigpt.evaluation.vision import greedy_reply_ids

        with self.lock:
            prompt, reply = greedy_reply_ids(self.model, self.tokenizer, example, max_new_tokens)
        text = self.tokenizer.decode(reply, skip_special=True)
        full = len(reply) >= max_new_tokens or len(prompt) + len(reply) >= self.model.lm.config.block_size
        reason = "length" if full else "stop"
        cuts = [text.index(stop) for stop in stops if stop in text]
        if cuts:
            text, reason = text[: min(cuts)], "stop"
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(reply),
            "total_tokens": len(prompt) + len(reply),
        }
        return Choice(text, reason), usage
