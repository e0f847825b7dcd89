"""Audio signal processing in torch: phase reconstruction (Griffin-Lim) for speech generation."""
