"""The base class every stack-file model derives from."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Strict and immutable: unknown keys are errors, and a validated spec cannot drift."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
