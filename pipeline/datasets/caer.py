"""Placeholder: being written."""


def read(root, manifest, *, annotations=None, transcripts=None):  # type: ignore[no-untyped-def]
    raise NotImplementedError
