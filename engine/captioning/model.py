"""Base models: small Llamas built from a config with a tokenizer trained on the data (presets
``tiny`` and ``small``, trained from scratch, run anywhere), or any Hugging Face causal LM by id
or local path, fine-tuned with LoRA (peft), optionally loaded in 4 bits (QLoRA, bitsandbytes).
A third kind, ``config:NAME`` (:data:`LLAMA_CONFIGS`), is a Llama of a published shape with random
weights: LoRA/QLoRA on it runs the large-model path (memory, speed) with nothing to download.

Nothing is downloaded by the workbench: a Hugging Face id must be in the local cache (or
HF_HUB_OFFLINE unset by the user). ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

import json
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
CONFIG_PREFIX = "config:"
LLAMA_CONFIGS: dict[str, dict[str, int]] = {
    "llama-2-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096},
    "llama-2-13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
                    "num_key_value_heads": 40, "vocab_size": 32000, "max_position_embeddings": 4096},
    "llama-tiny": {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 512},
}
"""Shapes of ``base=config:NAME`` (Llama 2's published configs; llama-tiny for CPU tests, with
grouped-query attention so that path is exercised too)."""
BASE_SEED = 0
"""The random weights of a config base are drawn from this seed, on the CPU, whatever the run's
seed: ``config:llama-2-7b`` names one model, which generation rebuilds exactly from its name."""


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


def is_config_base(base: str) -> bool:
    return base.startswith(CONFIG_PREFIX)


def config_spec(base: str) -> dict[str, int]:
    """The shape of ``config:NAME``.

    :raises CaptioningError: for an unknown name, listing the known ones
    """
    name = base.removeprefix(CONFIG_PREFIX)
    if name not in LLAMA_CONFIGS:
        known = ", ".join(CONFIG_PREFIX + n for n in LLAMA_CONFIGS)
        raise CaptioningError(f"base={base!r}: no such Llama config; known: {known}")
    return LLAMA_CONFIGS[name]


def config_tokenizer(texts: Iterable[str], base: str) -> Any:
    """A tokenizer of exactly ``config:NAME``'s vocabulary size, made without a download.

    A byte-level BPE is trained on ``texts`` (the dataset's prompts and captions, as for the
    presets, so the ids the model learns on are meaningful ones); a few thousand texts stop far
    short of 32,000 tokens, so the BPE's own vocabulary is padded with ``<reserved_N>`` entries up
    to the config's size. Nothing produces those ids (no merge leads to them): they only make the
    embedding and output layers the shape of the real model, which is what memory and speed
    depend on. Padding the model vocabulary, rather than adding 31,000 added tokens, keeps
    tokenizing as fast as the trained BPE's.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    size = config_spec(base)["vocab_size"]
    trained = train_tokenizer(texts, size).backend_tokenizer
    data = json.loads(trained.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for k in range(size - next_id):
        vocab[f"<reserved_{k}>"] = next_id + k
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), **SPECIALS)


def build_from_config(base: str, *, tokenizer: Any, device: str, load_in_4bit: bool = False, init_device: str = "cpu",
                      dtype: Any = None) -> tuple[Any, Any]:
    """``config:NAME`` with random weights, and ``tokenizer`` (which must have the config's
    vocabulary size, see :func:`config_tokenizer`); nothing is read or written on disk.

    The weights are drawn from :data:`BASE_SEED` on ``init_device``. On the CPU (default) they
    are drawn in float32 and then cast, which gives the same weights on every machine, so a LoRA
    adapter trained on the base finds it again (:func:`load_adapter`). On another device they are
    drawn directly in the model's dtype: much faster for a 7B, but other weights (the GPU check
    does this; it keeps nothing).

    In 4 bits (QLoRA) every linear layer but ``lm_head`` becomes a bitsandbytes NF4
    ``Linear4bit`` (bf16 compute, double quantization: as :func:`load_pretrained` asks
    transformers for), quantized as it moves to ``device``, so :func:`add_lora` with
    ``quantized=True`` treats it as a 4-bit pretrained model.

    :raises CaptioningError: an unknown name, a tokenizer of another size, or 4 bits without CUDA
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = config_spec(base)
    cuda = device.startswith("cuda")
    if load_in_4bit and not (torch.cuda.is_available() and cuda):
        raise CaptioningError("load_in_4bit: 4-bit QLoRA needs a CUDA GPU (bitsandbytes); none here. Train without it, or on a GPU server")
    if len(tokenizer) != spec["vocab_size"]:
        raise CaptioningError(f"base={base!r}: the tokenizer has {len(tokenizer)} tokens, the config {spec['vocab_size']}")
    half = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    dtype = dtype or (half if cuda else torch.float32)
    shape: dict[str, Any] = dict(spec)
    config = LlamaConfig(**shape, rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(BASE_SEED)
    on_cpu = torch.device(init_device).type == "cpu"
    with torch.device(init_device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.float32 if on_cpu else dtype)
    model = model.to(dtype)
    model.name_or_path = CONFIG_PREFIX + base.removeprefix(CONFIG_PREFIX)  # what peft records as the adapter's base
    model = quantize_4bit(model, device, half) if load_in_4bit else model.to(device)
    return model, tokenizer


def quantize_4bit(model: Any, device: str, compute_dtype: Any) -> Any:
    """``model`` with its linear layers (not ``lm_head``) replaced by bitsandbytes NF4 layers on
    ``device``, marked loaded-in-4-bit for peft; the layers are swapped one at a time, so memory
    peaks at the unquantized model plus one layer. Device-agnostic (bitsandbytes' CPU backend
    quantizes too: the tests use it); :func:`build_from_config` only calls it for CUDA."""
    import bitsandbytes as bnb
    import torch

    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or name.rsplit(".", 1)[-1] == "lm_head":
            continue
        layer = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None, compute_dtype=compute_dtype,
                                  compress_statistics=True, quant_type="nf4", quant_storage=torch.uint8, device="meta")
        layer.weight = bnb.nn.Params4bit(module.weight.data.to(compute_dtype), requires_grad=False, compress_statistics=True,
                                         quant_type="nf4", quant_storage=torch.uint8, module=layer)
        if module.bias is not None:
            layer.bias = torch.nn.Parameter(module.bias.data.to(compute_dtype), requires_grad=False)
        model.set_submodule(name, layer.to(device))  # Params4bit quantizes on its first move to a device
    model = model.to(device)
    model.is_loaded_in_4bit = True  # what transformers' bnb quantizer sets, and peft looks for
    return model


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
    from peft import PeftModel

    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise CaptioningError(f"{adapter_dir}: adapter_config.json names no base model")
    if is_config_base(base):  # random weights: rebuilt from BASE_SEED on the CPU, the same as training drew them
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
        model, _ = build_from_config(base, tokenizer=tokenizer, device=device, load_in_4bit=load_in_4bit)
    else:
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
