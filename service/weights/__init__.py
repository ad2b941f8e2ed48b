"""Owning your weights (issue 16): a fine-tuned model's LoRA adapter downloaded as a zip
(download.py, archive.py, model_card.py), and a PEFT adapter zip imported as a model of the caller's
organization once it is known to be servable on a base model (unpack.py, servability.py,
importer.py, imports.py)."""
