"""altui: active learning with weight-decay scheduling and distillation, run and watched from a terminal.
Packages by layer, bottom first: al and files; spec and store; results and execution; speed; tui; cli
(docs/architecture.md). Each imports only its own package and the layers below."""
