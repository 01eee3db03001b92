"""Fine-tuning: chat JSONL training files, LoRA training on the CPU, adapters as one hashed safetensors file,
and the node's job service behind the OpenAI-compatible `/v1/files` and `/v1/fine_tuning/jobs` endpoints."""
