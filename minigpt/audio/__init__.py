"""Audio in numpy / torch, no audio library: WAV files, resampling, the log-mel front end, and Griffin-Lim phase
reconstruction for speech generation."""
