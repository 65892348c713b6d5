"""Serving: answering a prompt with a model: chat turns, prompt fitting and generation, engines,
base models and model specs, the adapter registry, routing, admission and the stop rules.

Modules and their public names:
- adapter_files: adapter_fingerprint
- adapter_rows: lora_layers, adapter_rows
- admission: Admission
- answers: Cancelled
- chat: ChatRequest, ChatUpdate, ChatService
- cpu_threads: default_threads, one_thread
- defaults: GenerationDefaults, ModelDefaults
- generation: GenerationOptions, PreparedPrompt, GenerationResult
- models: LoadedModel, ModelService
- modelspec: ResolvedModel, ModelResolver, AnswerStream, AnswerPair
- registry: Promotions, ModelRegistry
- repetition: RepetitionGuard
- routing: Route, RouteSpec, Router
- stop_sequences: check_stop_sequences, visible_text
- engines/ (package)
"""
