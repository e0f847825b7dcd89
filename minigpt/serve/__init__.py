"""An OpenAI-compatible HTTP server for a model folder, with continuous batching and a chat page.

    python -m minigpt.serve run=outputs/sft/<run> port=8000

`app.create_app` builds the FastAPI application (routes in `routes.py`, request shapes in `schemas.py`,
errors in the OpenAI shape in `errors.py`, Prometheus metrics in `metrics.py`); the decoding is
`minigpt.inference.continuous.ContinuousBatcher`. See docs/serving.md.
"""
