"""Placeholder: being written."""


def write(out, *, clips, seed):  # type: ignore[no-untyped-def]
    raise NotImplementedError
