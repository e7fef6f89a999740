"""Examples: the README's quickstart, a complete example plugin (``loyalty``), ports."""
