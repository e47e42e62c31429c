"""Base models: small Llamas built from a config with a tokenizer trained on the data (presets
``tiny`` and ``small``, trained from scratch, run anywhere), or any Hugging Face causal LM by id
or local path, fine-tuned with LoRA (peft), optionally loaded in 4 bits (QLoRA, bitsandbytes).

Nothing is downloaded by the workbench: a Hugging Face id must be in the local cache (or
HF_HUB_OFFLINE unset by the user). ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.captioning.errors import CaptioningError

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab": 1200},
    "small": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 8, "vocab": 2000},
}
"""Llama-architecture models trained from scratch on the dataset (a CPU finishes them in minutes)."""
SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}


def quiet_transformers() -> None:
    """No download progress bars or advisory warnings in job logs."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (decodes back to the exact text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS.values()), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)


def build_preset(preset: str, tokenizer: Any, max_length: int, seed: int) -> Any:
    """A Llama model of the preset's size, initialised from ``seed``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    p = PRESETS[preset]
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=p["hidden_size"], intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"], num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_attention_heads"], max_position_embeddings=max(512, max_length),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


def load_pretrained(base: str, *, load_in_4bit: bool, trust_remote_code: bool, device: str) -> tuple[Any, Any]:
    """A Hugging Face causal LM and its tokenizer, by id (local cache) or path.

    :raises CaptioningError: 4-bit without CUDA (bitsandbytes would not refuse by itself), or a
        base that cannot be found
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if load_in_4bit and not (torch.cuda.is_available() and device.startswith("cuda")):
        raise CaptioningError("load_in_4bit: 4-bit QLoRA needs a CUDA GPU (bitsandbytes); none here. Train without it, or on a GPU server")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
        )
        kwargs["device_map"] = {"": device}
    elif device.startswith("cuda"):
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # local_files_only: the workbench never downloads; a Hugging Face id must be in the cache.
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(base).exists():
            raise CaptioningError(f"base={base!r}: cannot load this folder as a causal LM: {str(exc).splitlines()[0]}") from exc
        raise CaptioningError(
            f"base={base!r}: cannot load it as a causal LM: no such folder, and not in the local Hugging Face cache "
            f"(nothing is downloaded here; fetch it first, e.g. `huggingface-cli download {base}`, or give a local folder)"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def add_lora(model: Any, settings: LoraSettings, *, quantized: bool, gradient_checkpointing: bool = False) -> Any:
    """Wrap ``model`` with trainable LoRA adapters (peft); the base weights stay frozen.

    Gradient checkpointing is the non-reentrant kind: the reentrant one needs inputs that require
    grad (false for frozen embeddings under LoRA) and breaks under DDP.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    checkpointing = {"use_reentrant": False}
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in settings.targets if t not in names]
    if missing:
        raise CaptioningError(f"lora_targets: {', '.join(missing)} not in this model (modules include {', '.join(sorted(names)[:12])})")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.targets), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_adapter(adapter_dir: Path, *, device: str, load_in_4bit: bool, trust_remote_code: bool) -> Any:
    """A LoRA adapter on its base, the base loaded as training loaded it: from the local cache or
    its folder only, with the run's ``trust_remote_code``, in 4 bits for a QLoRA run.

    :raises CaptioningError: if the base named by the adapter cannot be found here
    """
    import json

    from peft import PeftModel

    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise CaptioningError(f"{adapter_dir}: adapter_config.json names no base model")
    model, _ = load_pretrained(base, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code, device=device)
    return PeftModel.from_pretrained(model, adapter_dir)


def load_captioner(folder: Path, device: str, *, load_in_4bit: bool = False, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """A trained captioner for generation: a full model folder, or a LoRA adapter on its base
    (loaded as training did: see :func:`load_adapter`).

    :raises CaptioningError: if the folder holds no model
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    model_dir = folder / "model"
    if not model_dir.is_dir():
        raise CaptioningError(f"{folder}: no trained captioner here (model/ missing); train it first")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if (model_dir / "adapter_config.json").exists():
        model = load_adapter(model_dir, device=device, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code)
        return (model if load_in_4bit else model.to(device)).eval(), tokenizer
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]  # transformers' stubs type .to() oddly


def vocab_texts(prompts: Sequence[str], captions: Sequence[str]) -> list[str]:
    return [*prompts, *(" " + c for c in captions)]
