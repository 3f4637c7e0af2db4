"""archsim: a hardware simulator and performance model for frontier LLMs."""
