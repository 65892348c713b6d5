"""LoRA fine-tuning: specs, run folders, the worker process and the job runner."""
