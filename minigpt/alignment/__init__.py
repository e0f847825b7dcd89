"""Constitutional AI and safety checks: principles as data, judges, critique → revision, red-team prompts.

A tiny model cannot judge itself in words, so the constitution is code and data (docs/safety.md): each
principle names a judge (a function of prompt and reply giving a violation score in [0, 1]), a critique
template and a revision method. SL-CAI (`stage=cai_sl`), AI-feedback preference pairs (`ai_feedback`), the
`constitution` RL reward and `evaluate.py eval=safety` are all built on the same judges.
"""
