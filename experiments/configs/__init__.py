"""Named experiment configs; each module defines `get_config()`."""
