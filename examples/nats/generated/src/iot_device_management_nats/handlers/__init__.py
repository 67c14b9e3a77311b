"""Your handlers: one module per receive operation, each with an `async def handle`.

asyncgen creates a module here when the spec gains a receive operation and never
changes one afterwards.
"""
