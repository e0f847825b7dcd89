"""Audio for speech: WAV files, resampling and the log-mel front end (all in numpy / torch, no audio library)."""
