"""Gradio demos, one tab per domain."""
