"""Policies: any HF causal LM scoring candidate actions, the prompts it sees, and reply parsing."""
