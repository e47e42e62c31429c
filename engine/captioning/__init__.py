"""Captioner: a Llama-family causal LM that writes a caption from a prompt (the composition, the
scene label, or both); training, batched generation, and the retrieval baseline. Heavy imports
(torch, transformers, peft, bitsandbytes) happen inside functions."""
