"""Image-and-text chat data for `stage=multimodal`: handwritten digits, generated scenes, a user's JSONL."""
