"""Building hundreds of thousands of models: what it takes to stay fast and small.

A plan of 100,000 batches holds 100,000 ``BatchSpec`` and 100,000 ``Change`` models.

- The cycle collector is triggered by allocations and would walk all of them again and
  again, finding nothing (none of them is part of a cycle): ``paused_gc`` switches it
  off for the bulk work, then freezes what exists (``gc.freeze``: the collector never
  walks those objects again, as they will live to the end of the command) and switches
  it back on. Memory is still freed by reference counts; only a reference cycle that
  already existed would now wait for ``gc.unfreeze`` to be collected.
- Each pydantic model carries the set of the fields it was given, a 728-byte set when
  every field is: 70 MB for 100,000 models. ``share_fields_set`` makes models with the
  same fields share one set. It is only for frozen models (BatchSpec, Change): pydantic
  adds to that set only on attribute assignment, which a frozen model refuses, and copies
  it for ``model_copy``.
- Validating a model costs microseconds that values already checked do not need: the
  manifest readers check every value of a batch, the planner builds its changes from
  those. ``constructor`` makes instances of such values directly (what ``model_construct``
  does, without the generality that makes it slower than validation).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


@contextmanager
def paused_gc() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


_SHARED: dict[frozenset[str], set[str]] = {}


def share_fields_set(models: Iterable[BaseModel]) -> None:
    set_attribute = object.__setattr__
    one: set[str] = set()
    for model in models:
        fields = model.__pydantic_fields_set__
        if fields is one:  # made by a constructor, or shared already
            continue
        if fields != one:  # models built alike come in runs: one lookup per run
            assert model.model_config.get("frozen"), "only frozen models may share their fields set"
            one = _SHARED.setdefault(frozenset(fields), set(fields))
        set_attribute(model, "__pydantic_fields_set__", one)


def constructor(model: type[Model]) -> Callable[[dict], Model]:
    """A function making a ``model`` from a dict of already checked values, without validating
    them: the dict becomes the instance's ``__dict__``, so it must hold every field of the model,
    in its order, and belong to the instance alone. For frozen models without private attributes
    (the instances share one fields set, as with ``share_fields_set``)."""
    config = model.model_config
    assert config.get("frozen") and config.get("extra") != "allow", "only frozen models without extras"
    assert not model.__private_attributes__ and not model.__pydantic_post_init__, "no private state to set up"
    every_field = _SHARED.setdefault(frozenset(model.model_fields), set(model.model_fields))
    new, set_attribute = object.__new__, object.__setattr__

    def construct(values: dict) -> Model:
        instance = new(model)
        set_attribute(instance, "__dict__", values)
        set_attribute(instance, "__pydantic_fields_set__", every_field)
        set_attribute(instance, "__pydantic_extra__", None)
        set_attribute(instance, "__pydantic_private__", None)
        return instance

    return construct
