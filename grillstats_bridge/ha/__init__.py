"""Home Assistant: the table of every published entity, and the publisher that sends it."""
