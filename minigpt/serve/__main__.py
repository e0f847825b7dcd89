"""`python -m minigpt.serve run=<run or model folder> [port=8000] [api_key=...]`: serve a model folder.

Options are the keys of conf/serve.yaml. The server listens on 127.0.0.1 only; `host=0.0.0.0` exposes it
to the network, which should come with an `api_key` (and, beyond a trusted network, a TLS proxy in front).
"""

from __future__ import annotations

import uvicorn
from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.serve.app import create_app
from minigpt.serve.settings import ServeSettings


@command("serve")
def main(cfg: DictConfig) -> None:
    """Load the model in `cfg.run` and serve it until interrupted."""
    settings = ServeSettings.from_config(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg.run, map_location=cfg.device)
    app = create_app(model, tokenizer, settings)
    print(
        f"serving {cfg.run} as {settings.model_name!r}: http://{settings.host}:{settings.port}/ (chat page), /v1 (API)"
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        print("warning: listening beyond this machine without api_key; anyone who can reach it may use it")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
