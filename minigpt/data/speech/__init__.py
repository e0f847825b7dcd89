"""Speech data: a synthesised multilingual corpus (espeak-ng, pinned) and a user's WAV folder."""
