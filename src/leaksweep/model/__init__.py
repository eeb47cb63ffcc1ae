"""The model room: build, load, fine-tune (TRL SFT, one process or DDP), sample from and save causal LMs.

The only part of leaksweep that imports torch, transformers, trl, peft, tokenizers and vllm, always
inside functions, so importing any module here stays cheap. loading.py (LM, load/save, device and
kernel), tiny.py and smollm2.py (the built-in models), train_setup.py and varlen.py (the training
layout and attention), callbacks.py and sft.py (the fine-tune), ddp.py (multi-process training),
generate.py (sampling) and rollouts.py (teacher rollouts for the data room). Add a new model source
next to tiny.py/smollm2.py; importers name the module (`from leaksweep.model.sft import train_sft`).
"""
