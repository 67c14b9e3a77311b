"""Tests of your handlers.

asyncgen wrote this file once and never touches it again. The spec's message examples
are tested by `test_spec_examples.py`, which asyncgen rewrites on every generation.
"""
