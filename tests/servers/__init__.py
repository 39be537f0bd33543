"""Real servers for tests: a scripted HTTP server and the llama.cpp server (SmolLM2)."""
