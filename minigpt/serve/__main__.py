"""`python -m minigpt.serve run=<run or model folder> [port=8000] [api_key=...] [safety=filter [filter=...]]`.

Serves a model folder. Options are the keys of conf/serve.yaml; `safety=filter` puts the chat's safety
filter in front of the model (minigpt/serve/guard.py). The folder of a `stage=multimodal` run also answers
chat messages with images (OpenAI's `image_url` parts as data URLs, minigpt/serve/images.py). The server
listens on 127.0.0.1 only; `host=0.0.0.0` exposes it to the network, which should come with an `api_key`
(and, beyond a trusted network, a TLS proxy in front).
"""

from __future__ import annotations

import uvicorn
from omegaconf import DictConfig

from minigpt.alignment.safety_filter import safety_filter_from_config
from minigpt.cli.command import command
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.model.vision import has_vision, load_vision_language_model
from minigpt.serve.app import create_app
from minigpt.serve.images import ImageChat
from minigpt.serve.settings import ServeSettings


@command("serve")
def main(cfg: DictConfig) -> None:
    """Load the model in `cfg.run` and serve it until interrupted."""
    settings = ServeSettings.from_config(cfg)
    guard = safety_filter_from_config(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg.run, map_location=cfg.device)
    # A multimodal folder: its LM (with the tower, and MoT's image weights) answers the requests with images,
    # a second copy beside the engine's, since the engine batches token ids only.
    images = ImageChat(*load_vision_language_model(cfg.run, map_location=cfg.device)) if has_vision(cfg.run) else None
    app = create_app(model, tokenizer, settings, guard, images)
    print(
        f"serving {cfg.run} as {settings.model_name!r}: http://{settings.host}:{settings.port}/ (chat page), /v1 (API)"
    )
    if images is not None:
        size = images.model.tower.config.image_size
        print(f"images on: user messages may carry image_url parts (data URLs of {size}×{size} images)")
    if guard is not None:
        learned = "judges + learned filter" if guard.classifier is not None else "judges only"
        print(f"safety filter on ({learned}): blocked or rewritten replies end with finish_reason=content_filter")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print("warning: listening beyond this machine without api_key; anyone who can reach it may use it")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
