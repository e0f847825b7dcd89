"""Export a model folder to a Hugging Face transformers folder.

    python -m minigpt.cli.export_hf run=outputs/train/<run> out=exports/my-gpt

The GPT-2 family becomes `GPT2LMHeadModel`, the Llama family `LlamaForCausalLM` (`minigpt.export.hf`);
`transformers.AutoModelForCausalLM.from_pretrained(out)` loads the result.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.export.hf import export_hf, family
from minigpt.model.folder import load_model_folder


@command("export_hf")
def main(cfg: DictConfig) -> Path:
    """Write the export of the model in `cfg.run` to `cfg.out`; returns the folder."""
    model, tokenizer = load_model_folder(cfg.run, field="run")
    out = export_hf(model, tokenizer, cfg.out)
    print(f"wrote {out} ({family(model.config)}); load it with transformers.AutoModelForCausalLM.from_pretrained")
    return out


if __name__ == "__main__":
    main()
