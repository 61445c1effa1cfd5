"""finetune: datasets -> validation report -> LoRA training -> adapter + eval report."""
