"""`python -m minigpt.speak run=<tts run> text="4 7 1" out=out.wav` — the command lives in `minigpt.cli.speak`."""

from minigpt.cli.speak import main

if __name__ == "__main__":
    main()
