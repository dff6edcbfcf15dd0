"""Pure renderers: spec (+ resolved values) in, text out. Nothing here imports pulumi."""
